"""Batched common corruptions (CIFAR-10-C / Tiny-ImageNet-C / ImageNet-C) in torch; work in progress."""

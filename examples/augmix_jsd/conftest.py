"""AugMix trained the way its repository trains it: the Jensen-Shannon consistency loss, as a recipe.

Hendrycks et al. 2020 (AugMix, ICLR) train on three views of each image, the clean one and two
independent AugMix draws, with loss = CE(clean) + 12 * JS(p_clean, p_aug1, p_aug2). The built-in
trainer would train on one AugMix draw with plain cross-entropy, which is not what the AugMix
repository ships; this conftest.py hands pytest-psa the repository's recipe through the
``pytest_psa_train`` hook, so every psa audit of the tests in this folder trains with it (and
caches, seeds, budgets and measures as usual).

One difference from the repository: its clean view has been through the base random crop and flip
that the two AugMix views share; here the clean view is the un-augmented image (the audited
augmentation is AugMix alone, so the three views are x, AugMix(x), AugMix(x)).
"""

import torch
import torch.nn.functional as F

import pytest_psa

JSD_WEIGHT = 12.0  # the paper's lambda


def jsd_loss(logits_clean: torch.Tensor, logits_aug1: torch.Tensor, logits_aug2: torch.Tensor,
             labels: torch.Tensor) -> torch.Tensor:
    """CE on the clean view + lambda * the Jensen-Shannon divergence of the three views' predictions
    (as in the AugMix repository's cifar.py: KL(M || p) with M the clamped mean, averaged over views)."""
    p_clean, p_aug1, p_aug2 = (F.softmax(z, dim=1) for z in (logits_clean, logits_aug1, logits_aug2))
    log_mixture = torch.clamp((p_clean + p_aug1 + p_aug2) / 3.0, 1e-7, 1.0).log()
    js = (F.kl_div(log_mixture, p_clean, reduction="batchmean") + F.kl_div(log_mixture, p_aug1, reduction="batchmean")
          + F.kl_div(log_mixture, p_aug2, reduction="batchmean")) / 3.0
    return F.cross_entropy(logits_clean, labels) + JSD_WEIGHT * js


# version: bump it when jsd_loss changes (only this function's own source is part of the cache key)
@pytest_psa.training_recipe(version="1")
def pytest_psa_train(plan):
    if plan.augmentation.kind == "identity":
        return None  # the ERM baseline: the built-in trainer (plain cross-entropy), as the repository's baseline
    net = plan.build_model().train()
    opt = plan.optimizer(net)  # the preset's SGD and schedule: only the loss is AugMix's
    sched = plan.scheduler(opt)
    for views, labels in plan.batches(views=2, clean=True, model=net):  # (3, N, C, H, W): x, AugMix(x), AugMix(x)
        logits = net(views.flatten(0, 1))  # one batch of 3N, as the repository does (BatchNorm sees all views)
        loss = jsd_loss(*logits.split(len(labels)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        plan.log_loss(loss)
    return net, {"loss": f"CE(clean) + {JSD_WEIGHT:g} * JS(clean, augmix1, augmix2)", "views": 3}

"""Data sources: the embedded synthetic set, torchvision-format CIFAR, image folders and archives,
``.npz`` arrays and users' datasets, all loaded as one `ImageData` (uint8 NCHW images, labels)."""

from pytest_psa.data.domains import DomainData, load_domains, synthetic_domains
from pytest_psa.data.image_data import ImageData, from_arrays
from pytest_psa.data.sources import as_image_data, available, from_dataset, load_data, register_data_source
from pytest_psa.data.synthetic import synthetic

__all__ = ["DomainData", "ImageData", "as_image_data", "available", "from_arrays", "from_dataset", "load_data", "load_domains", "register_data_source", "synthetic", "synthetic_domains"]

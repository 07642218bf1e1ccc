"""The exact CIFAR-10 subset of the shared data: the first 4,000 training and 1,000 test images, as
one .npz (never downloaded); CIFAR-10's normalisation and augmentation."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from suite.config import DataConfig
from suite.data import RGBImages, Source, image_source, read_npz
from suite.datasets.base import Dataset, root_of
from suite.datasets.cifar10 import CIFAR_MEAN, CIFAR_STD
from suite.errors import ConfigError


def npz_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """The shape of one array in an .npz, read from its header only (None when unreadable: the
    loader then says why)."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return tuple(read(f)[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


class Cifar10Subset(Dataset):
    """data.root/cifar10-subset/cifar10_exact_subset.npz: x_train, y_train, x_test, y_test."""
    name = "cifar10_subset"
    mean, std = CIFAR_MEAN, CIFAR_STD

    def path(self, cfg: DataConfig) -> Path:
        return root_of(cfg) / "cifar10-subset" / "cifar10_exact_subset.npz"

    def files_problem(self, cfg: DataConfig) -> str | None:
        path = self.path(cfg)
        if path.is_file():
            return None
        return (f"CIFAR-10 subset not found: no {path} "
                f"(set data.root to the folder holding cifar10-subset/; it cannot be downloaded)")

    def known(self, cfg: DataConfig):
        shape = npz_shape(self.path(cfg), "x_train")
        return ((3, 32, 32), 10, shape[0]) if shape else None

    def load(self, cfg: DataConfig) -> Source:
        problem = self.files_problem(cfg)
        if problem:
            raise ConfigError(problem)
        x, y, vx, vy = read_npz(self.path(cfg), ("x_train", "y_train", "x_test", "y_test"), image_shape=(32, 32, 3),
                                image_dtype=np.uint8)
        return image_source("cifar10_subset", RGBImages(x, y), RGBImages(vx, vy), x, y, vx, vy,
                            CIFAR_MEAN, CIFAR_STD, augmentable=True)

"""CIFAR-10 (Krizhevsky 2009): 32x32 colour images of 10 classes, 50,000 training and 10,000 test,
read by torchvision from cifar-10-batches-py; the research's augmentation (crop, flip, jitter)."""
from __future__ import annotations

from suite.config import DataConfig
from suite.data import Source, image_source
from suite.datasets.base import Dataset, root_of
from suite.errors import ConfigError

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # training set, per channel on [0, 1]


class Cifar10(Dataset):
    """torchvision's CIFAR10 under data.root/cifar-10-batches-py (its md5 check decides corruption)."""
    name = "cifar10"
    mean, std = CIFAR_MEAN, CIFAR_STD

    def files_problem(self, cfg: DataConfig) -> str | None:
        folder = root_of(cfg) / "cifar-10-batches-py"
        if cfg.download or folder.is_dir():
            return None
        return (f"CIFAR-10 not found: no {folder} "
                f"(set data.root to the folder holding cifar-10-batches-py, or data.download=true)")

    def known(self, cfg: DataConfig):
        return (3, 32, 32), 10, 50_000

    def load(self, cfg: DataConfig) -> Source:
        from torchvision.datasets import CIFAR10

        problem = self.files_problem(cfg)
        if problem:
            raise ConfigError(problem)
        root = root_of(cfg)
        try:
            train = CIFAR10(str(root), train=True, download=cfg.download)
            test = CIFAR10(str(root), train=False, download=cfg.download)
        except RuntimeError as e:  # torchvision's md5 check failed
            raise ConfigError(f"CIFAR-10 in {root / 'cifar-10-batches-py'} is incomplete or corrupt ({e})") from None
        return image_source("cifar10", train, test, train.data, train.targets, test.data, test.targets,
                            CIFAR_MEAN, CIFAR_STD, augmentable=True)

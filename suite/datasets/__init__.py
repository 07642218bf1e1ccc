"""The dataset registry: a name -> the class that says everything about that dataset (see
suite/datasets/base.py). Adding a dataset is one file here and one line in DATASETS."""
from __future__ import annotations

import torch

from suite.config import DataConfig
from suite.data import Data
from suite.datasets.base import Dataset
from suite.datasets.cifar10 import Cifar10
from suite.datasets.cifar10_subset import Cifar10Subset
from suite.datasets.mnist import Mnist
from suite.datasets.mnist1d import Mnist1d
from suite.datasets.shakespeare_char import ShakespeareChar
from suite.datasets.synthetic import Synthetic
from suite.datasets.synthetic_text import SyntheticText
from suite.errors import ConfigError

DATASETS: dict[str, type[Dataset]] = {
    "synthetic": Synthetic,
    "mnist1d": Mnist1d,
    "mnist": Mnist,
    "cifar10": Cifar10,
    "cifar10_subset": Cifar10Subset,
    "shakespeare_char": ShakespeareChar,
    "synthetic_text": SyntheticText,
}


def dataset(name: str) -> Dataset:
    """The registered dataset `name`; one ConfigError line naming the valid ones otherwise."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}' (valid: {', '.join(sorted(DATASETS))})")
    return DATASETS[name]()


def build_data(cfg: DataConfig, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
               device: torch.device | str = "cpu") -> Data:
    """Load dataset `cfg.name` and its loader for this rank."""
    ds = dataset(cfg.name)
    if batch_size < 1:
        raise ConfigError(f"train.batch_size: must be at least 1, got {batch_size}")
    if batch_size % world_size:  # before loading anything
        raise ConfigError(f"train.batch_size: {batch_size} is not divisible by the world size {world_size}")
    return ds.build(cfg, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, device=device)

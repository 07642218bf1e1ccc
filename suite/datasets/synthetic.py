"""Synthetic images (or 1-D signals) made in memory: 10 classes of smooth prototypes plus noise, for tests."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from suite.config import DataConfig
from suite.data import Source, float_source, generator
from suite.datasets.base import Dataset

SYNTHETIC_CLASSES = 10
SYNTHETIC_NOISE = 2.5  # std of the per-example noise around a class prototype (prototypes have std 1)


def synthetic_arrays(shape: tuple[int, ...], n_train: int, n_test: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """10 classes, each a smooth random prototype (blocks of ~4 pixels) plus per-example noise,
    scaled to unit variance; independent of the run seed and of the global RNG."""
    shape = (1, *shape) if len(shape) == 1 else tuple(shape)
    spatial = shape[1:]
    coarse = torch.randn(SYNTHETIC_CLASSES, shape[0], *(math.ceil(s / 4) for s in spatial),
                         generator=generator("synthetic", "prototypes", shape))
    protos = F.interpolate(coarse, size=spatial, mode="nearest")
    scale = 1.0 / math.sqrt(1.0 + SYNTHETIC_NOISE**2)

    def draw(split: str, n: int) -> tuple[Tensor, Tensor]:
        gen = generator("synthetic", split, shape, n)
        labels = (torch.arange(n) % SYNTHETIC_CLASSES)[torch.randperm(n, generator=gen)]
        x = (protos[labels] + SYNTHETIC_NOISE * torch.randn(n, *shape, generator=gen)) * scale
        return x, labels

    return (*draw("train", n_train), *draw("test", n_test))


class Synthetic(Dataset):
    """data.synthetic_shape examples ([C, H, W] or [L]), data.synthetic_train / synthetic_test of them."""
    name = "synthetic"

    def known(self, cfg: DataConfig):
        shape = tuple(cfg.synthetic_shape)
        return ((1, *shape) if len(shape) == 1 else shape), SYNTHETIC_CLASSES, cfg.synthetic_train

    def load(self, cfg: DataConfig) -> Source:
        x, y, vx, vy = synthetic_arrays(cfg.synthetic_shape, cfg.synthetic_train, cfg.synthetic_test)
        return float_source("synthetic", x, y, vx, vy, SYNTHETIC_CLASSES)

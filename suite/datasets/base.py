"""What a dataset is: one class that says its shape, classes (or vocabulary), splits, files and how
they are checked, how it loads, its normalisation and its primary metric."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from suite.config import DataConfig
from suite.data import Data, DataSpec, DeviceData, Source, TorchvisionData, hold_out
from suite.errors import ConfigError


class Dataset:
    """One dataset. Adding one is a file with a subclass and one line in `suite.datasets.DATASETS`."""
    name: ClassVar[str] = ""
    # the number a study ranks methods by, and its direction: test accuracy (percent, higher is
    # better) for the image sets, test loss (nats per character, lower is better) for text
    metric: ClassVar[str] = "test_accuracy"
    lower_is_better: ClassVar[bool] = False
    metric_label: ClassVar[str] = "test accuracy (%)"  # how tables and captions name the metric, unit in brackets
    mean: ClassVar[tuple[float, ...] | None] = None  # images: per-channel mean/std of the training set on [0, 1]
    std: ClassVar[tuple[float, ...] | None] = None

    @classmethod
    def metric_record(cls) -> dict:
        """The primary metric as result.json records it (the report reads it from there, without torch)."""
        return {"name": cls.metric, "label": cls.metric_label, "higher_is_better": not cls.lower_is_better}

    def files_problem(self, cfg: DataConfig) -> str | None:
        """Why the files are not where data.root says (one line), or None; presence only, the
        loader checks the contents. Datasets made in memory have no files."""
        return None

    def known(self, cfg: DataConfig) -> tuple[tuple[int, ...], int, int] | None:
        """(input shape, classes, training examples before data.val_size) without loading; None when unknown."""
        return None

    def n_train(self, cfg: DataConfig) -> int | None:
        """Training examples after data.val_size, without loading (None when unknown)."""
        known = self.known(cfg)
        return None if known is None else known[2] - cfg.val_size

    def split_problem(self, cfg: DataConfig) -> str | None:
        """Why the configured split leaves a part empty (one line), known without loading; None when
        it does not or the sizes are unknown."""
        known = self.known(cfg)
        if cfg.val_size and known is not None and known[2] - cfg.val_size < 1:
            return (f"data.val_size: {cfg.val_size} leaves no training examples of {self.name} (it has "
                    f"{known[2]} before the split); set a smaller data.val_size")
        return None

    def load(self, cfg: DataConfig) -> Source:
        """The whole dataset in memory, checked; one ConfigError line when it cannot be."""
        raise NotImplementedError

    def build(self, cfg: DataConfig, **kw) -> Data:
        """This rank's loader (`cfg.loader`) over the dataset with data.val_size examples held out."""
        source = hold_out(self.load(cfg), cfg.val_size)
        kw.update(augment=cfg.augment, jitter=cfg.jitter)
        if cfg.loader == "device":
            return DeviceData(source, **kw)
        if cfg.loader == "torchvision":
            return TorchvisionData(source, num_workers=cfg.num_workers, **kw)
        raise ConfigError(f"data.loader: '{cfg.loader}' is not one of device, torchvision")


def root_of(cfg: DataConfig) -> Path:
    return Path(cfg.root).expanduser()


def spec_of(name: str, train_x, test_x, num_classes: int) -> DataSpec:
    return DataSpec(name, tuple(train_x.shape[1:]), num_classes, len(train_x), len(test_x))

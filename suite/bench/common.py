"""What every bench section shares: the plan, the targets, timing helpers and the real parts (runners, data, masks) built from the suite's own code."""
from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from suite import experiment as E
from suite.errors import ConfigError
from suite import masks as M
from suite.provenance import cpu_name


TARGET_SPARSITY = 0.9      # sparsity of the masked runs (fraction of prunable weights that are zero)


FROM_SPARSITY = 0.8        # the mask-update benchmark prunes from this sparsity to TARGET_SPARSITY


BATCH = 128                # global batch of every training benchmark


EPOCHS = 100               # train.epochs of the timed runners: the cosine lr stays near its base


CIFAR10_TRAIN_IMAGES = (50_000 // BATCH) * BATCH  # one CIFAR-10 epoch: 390 full batches, the rest dropped


CIFAR10_TEST_IMAGES = 10_000


MNIST_TRAIN, MNIST_TEST = 60_000, 10_000

OPENLTH = {"epoch_s": 15.3, "train_s": 12.4, "bare_s": 0.88}  # seconds per epoch (about 4,800 images/s)

# the datasets each model is benchmarked on, first found wins; then synthetic data of this shape


MODEL_DATA: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "lenet300": (("mnist",), (1, 28, 28)),
    "resnet18": (("cifar10", "cifar10_subset"), (3, 32, 32)),
    "vgg19": (("cifar10", "cifar10_subset"), (3, 32, 32)),
}

# the targets of issue #5


LENET_EPOCH_MAX_S = 1.5


LENET_OVER_BARE_MAX = 1.7


MASKED_RATIO_MAX = 1.05


MASK_UPDATE_MAX_S = 1.0     # for VGG-19's 20M weights


DATA_SPEEDUP_MIN = 3.0


GPU_EPOCH_MAX_S = 2.0       # ResNet-18 / CIFAR-10 on one H100, bf16 + channels_last, masks at 90%


@dataclass(frozen=True)
class Plan:
    """How much of each measurement to run."""
    device: str
    quick: bool
    models: tuple[str, ...]
    data_root: str
    synthetic: bool           # ignore the files under data_root

    def train_steps(self, model: str) -> tuple[int, int]:
        """(batches per timed epoch, timed epochs per runner) of the training benchmark."""
        small = model == "lenet300"
        if self.device == "cuda":
            return (200, 5) if small else ((20, 3) if self.quick else (100, 5))
        if small:
            return (50, 3) if self.quick else (200, 7)
        return (1, 1) if self.quick else (2, 5)

    @property
    def repeats(self) -> int:
        return 2 if self.quick else 5

    @property
    def data_batches(self) -> int:
        return 10 if self.quick else 100

    @property
    def workers(self) -> tuple[int, ...]:
        # a DataLoader with workers is only worth timing over more than a few batches
        return (0,) if self.quick else (0, os.cpu_count() or 1)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def verdict(measured: float | None, limit: float, kind: str, unit: str = "") -> tuple[bool | None, str]:
    """(met, text) for a target: kind 'max' means measured <= limit, 'min' means measured >= limit;
    unit 'pts' gives the gap in percentage points (for ratios such as 1.05)."""
    if measured is None:
        return None, "not measured"
    if kind == "max":
        met = measured <= limit
        gap = limit - measured if met else measured - limit
    elif kind == "min":
        met = measured >= limit
        gap = measured - limit if met else limit - measured
    else:
        raise ValueError(f"unknown target kind '{kind}'")
    if unit == "pts":  # a ratio near 1: the gap in percentage points of overhead
        amount = f"{100 * gap:.1f} points"
    else:
        amount = f"{gap:.3g}{unit}"
    return met, ("met" if met else "missed") + f" by {amount}"


def machine(device: str) -> dict:
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "gpu": gpu}
    label = f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}"
    info["label"] = f"{gpu}, {label}" if gpu else label
    return info


def load_1min() -> float:
    return os.getloadavg()[0]


def free_memory(device: str) -> None:
    """Drop the last section's runners before the next one allocates (GPU memory is not collected eagerly)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


_FOUND: dict[tuple[str, str], bool] = {}


def dataset_exists(name: str, root: str) -> bool:
    """Whether the suite's own loader finds dataset `name` under `root` (it raises ConfigError if not)."""
    from suite.datasets import dataset

    key = (name, root)
    if key not in _FOUND:
        try:
            dataset(name).load(E.load_config(None, [f"data.name={name}", f"data.root={root}"], "dense").data)
            _FOUND[key] = True
        except ConfigError:
            _FOUND[key] = False
    return _FOUND[key]


def pick_data(candidates: tuple[str, ...], shape: tuple[int, ...], plan: Plan, n_train: int,
              n_test: int) -> tuple[str, list[str]]:
    """(the dataset's name for the tables, its config overrides): the first real dataset found,
    else synthetic data of `shape`."""
    for name in candidates:
        if not plan.synthetic and dataset_exists(name, plan.data_root):
            return name, [f"data.name={name}", f"data.root={plan.data_root}"]
    dims = ",".join(map(str, shape))
    return f"synthetic {'x'.join(map(str, shape))}", [
        "data.name=synthetic", f"data.synthetic_shape=[{dims}]", f"data.synthetic_train={n_train}",
        f"data.synthetic_test={n_test}"]


def accelerator_for(device: str, precision: str):
    """A fresh Accelerator: its state is process-global, and the precision may differ from the last."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    return Accelerator(cpu=device == "cpu", mixed_precision={"fp32": "no", "bf16": "bf16"}[precision])


def make_runner(method: str, overrides: list[str], acc, folder: Path):
    """A runner as run.py builds it, with its optimizer (Runner.run would make it at the start)."""
    from suite.trainer import Runner, build_optimizer

    cfg = E.load_config(None, [*overrides, "wandb.mode=disabled"], method)
    runner = Runner(cfg, folder, acc)
    runner.optimizer = acc.prepare(build_optimizer(cfg.train, runner.model))
    return runner


def install_mask(runner, sparsity: float) -> float:
    """Install the global magnitude mask at `sparsity`; returns the measured sparsity."""
    mask = M.mask_at_sparsity(M.magnitude_scores(runner.weights), sparsity)
    runner.masked.install(mask, runner.optimizer)
    return M.sparsity_of(runner.masked.mask)


def cut_epochs(data, steps: int) -> int:
    """Make every epoch of `data` the first `steps` batches of its real plan; returns the steps kept."""
    full_plan = data.train_plan
    data.train_plan = lambda epoch: full_plan(epoch)[:steps]
    return min(steps, data.steps_per_epoch)

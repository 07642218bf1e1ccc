"""Speed of the suite's real hot paths on this machine.

    python -m suite.bench [--device cpu|cuda] [--models lenet300 resnet18 vgg19] [--quick] [--json FILE]

(console script: pp-bench). Every number is the median of repeated timings taken after a warm-up;
on a GPU each timing ends with a device synchronisation. Timings are wall-clock, so they depend on
whatever else the machine runs: every row names the machine (CPU model, cores, torch threads,
torch version, GPU) and the 1-minute load average when the row was measured.

1. training: images/s of the runner's own step, `Runner.train_epoch`, on runners built from
   `load_config` overrides: the dense control, and progressive pruning with a 90% global magnitude
   mask installed (enforcement on); same model, same init, same data and batch order. ratio = masked
   step time / dense step time. A timed epoch is cut to the first `steps` batches of its index plan;
   the loader, the augmentation and the step are the real ones. Dense and masked epochs alternate
   (ABBA), so drift in a shared machine's load hits both alike. LeNet-300-100 on MNIST, ResNet-18 and
   VGG-19 on CIFAR-10 (the 4,000-image subset where the full set is absent), synthetic data of the
   same shape where no file is found under --data-root (or with --synthetic).
2. mask update: one progressive step of the global threshold, 80% -> 90% sparsity, as the runner
   takes it: magnitude scores and `mask_at_sparsity` with the alive mask ("top-k"), then
   `synchronise`, `MaskedWeights.install` with an SGD optimizer holding momentum, and the smallest
   surviving magnitude ("install").
3. data path: images/s of `DeviceData.train_batches` against `TorchvisionData.train_batches` (the
   torchvision transforms in a DataLoader, 0 and N workers) over the same index plan: CIFAR with
   its augmentation (crop, flip, colour jitter), MNIST without. speedup = device / best torchvision.
4. GPU only (--device cuda): section 1 for fp32 and bf16, each NCHW and channels_last, and seconds
   per ResNet-18 CIFAR-10 epoch with 90% masks, bf16 + channels_last: 390 steps of 128 plus 10,000
   test images, extrapolated from the measured images/s of training and evaluation.
5. OpenLTH head to head: LeNet-300-100 on the full MNIST (60,000 train, 10,000 test), batch 128,
   SGD at lr 0.1 without momentum or weight decay (OpenLTH's recipe), device loader, masks at 90%:
   seconds of `train_epoch` + `evaluate` per epoch; the whole `Runner.run` per epoch (pruning,
   checkpoint and metrics files included, first epoch included); and the bare compute (forward,
   backward, SGD on pre-made tensors: no mask, no loader, no Accelerate). OpenLTH's figures for a
   2-core machine of this type, from issue #5: 15.3 s per epoch with its test pass, 12.4 s training
   only, 0.88 s bare compute.

The targets of issue #5 are checked at the end and printed as met / missed by how much.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from suite import config as C
from suite import masks as M
from suite.provenance import cpu_name

TARGET_SPARSITY = 0.9      # sparsity of the masked runs (fraction of prunable weights that are zero)
FROM_SPARSITY = 0.8        # the mask-update benchmark prunes from this sparsity to TARGET_SPARSITY
BATCH = 128                # global batch of every training benchmark
EPOCHS = 100               # train.epochs of the timed runners: the cosine lr stays near its base
CIFAR10_TRAIN_IMAGES = (50_000 // BATCH) * BATCH  # one CIFAR-10 epoch: 390 full batches, the rest dropped
CIFAR10_TEST_IMAGES = 10_000
MNIST_TRAIN, MNIST_TEST = 60_000, 10_000

# OpenLTH on a 2-core machine of this type (issue #5): LeNet-300-100, real MNIST, batch 128, SGD
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


# --- small pure helpers ---------------------------------------------------------------------------

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


def _free(device: str) -> None:
    """Drop the last section's runners before the next one allocates (GPU memory is not collected eagerly)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


# --- building the real parts ----------------------------------------------------------------------

_FOUND: dict[tuple[str, str], bool] = {}


def dataset_exists(name: str, root: str) -> bool:
    """Whether the suite's own loader finds dataset `name` under `root` (it raises ConfigError if not)."""
    from suite.data import DATASETS

    key = (name, root)
    if key not in _FOUND:
        try:
            DATASETS[name](C.load_config(None, [f"data.name={name}", f"data.root={root}"], "dense").data)
            _FOUND[key] = True
        except C.ConfigError:
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

    cfg = C.load_config(None, [*overrides, "wandb.mode=disabled"], method)
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


# --- 1 and 4: training throughput ---------------------------------------------------------------

def bench_training(model: str, plan: Plan, info: dict, precision: str = "fp32",
                   channels_last: bool = False, compile: bool = False) -> dict:
    """Dense and 90%-masked images/s of Runner.train_epoch for one model and precision."""
    from suite.trainer import evaluate

    steps, repeats = plan.train_steps(model)
    candidates, shape = MODEL_DATA[model]
    dataset, data_overrides = pick_data(candidates, shape, plan, n_train=steps * BATCH, n_test=1024)
    overrides = [f"model.name={model}", *data_overrides, f"train.batch_size={BATCH}", f"train.epochs={EPOCHS}",
                 f"train.precision={precision}", f"train.channels_last={str(channels_last).lower()}",
                 f"prune.target_sparsity={TARGET_SPARSITY}", f"train.compile={str(compile).lower()}"]
    acc = accelerator_for(plan.device, precision)
    with tempfile.TemporaryDirectory() as tmp:
        dense = make_runner("dense", overrides, acc, Path(tmp) / "dense")
        masked = make_runner("progressive", overrides, acc, Path(tmp) / "masked")
        sparsity = install_mask(masked, TARGET_SPARSITY)
        steps = min(cut_epochs(dense.data, steps), cut_epochs(masked.data, steps))
        for runner in (dense, masked):
            runner.train_epoch(0, 0)  # warm-up: allocator, kernels, cudnn autotuning
        rates: dict[str, list[float]] = {"dense": [], "masked": []}
        for rep in range(repeats):
            order = [("dense", dense), ("masked", masked)]
            for name, runner in (order if rep % 2 == 0 else order[::-1]):  # ABBA
                rates[name].append(runner.train_epoch(0, 1 + rep)["images_per_s"])
        ratios = [d / m for d, m in zip(rates["dense"], rates["masked"])]  # per pair: same load
        eval_rate = None
        if plan.device == "cuda":  # the GPU epoch estimate needs the test pass too
            n_test = masked.data.spec.n_test
            evaluate(masked.model, masked.data, masked.loss_fn, acc)
            seconds = [_timed(lambda: evaluate(masked.model, masked.data, masked.loss_fn, acc), plan.device)
                       for _ in range(repeats)]
            eval_rate = n_test / median(seconds)
    return {"machine": info["label"], "load": load_1min(), "model": model, "dataset": dataset,
            "precision": precision, "channels_last": channels_last, "batch_size": BATCH, "steps": steps,
            "repeats": repeats, "sparsity": sparsity, "dense_images_per_s": median(rates["dense"]),
            "masked_images_per_s": median(rates["masked"]), "ratio": median(ratios),
            "eval_images_per_s": eval_rate}


def gpu_variants(device: str) -> list[tuple[str, bool]]:
    if device == "cuda":
        return [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
    return [("fp32", False)]


def gpu_epoch(rows: list[dict], info: dict) -> dict | None:
    """Seconds per ResNet-18 CIFAR-10 epoch (bf16, channels_last, masks at 90%) from measured rates."""
    found = [r for r in rows if r["model"] == "resnet18" and r["precision"] == "bf16" and r["channels_last"]]
    if not found:
        return None
    row = found[0]
    train_s = CIFAR10_TRAIN_IMAGES / row["masked_images_per_s"]
    eval_s = CIFAR10_TEST_IMAGES / row["eval_images_per_s"]
    return {"machine": info["label"], "load": row["load"], "model": "resnet18", "dataset": row["dataset"],
            "precision": "bf16", "channels_last": True, "sparsity": row["sparsity"],
            "train_images": CIFAR10_TRAIN_IMAGES, "test_images": CIFAR10_TEST_IMAGES,
            "train_s": train_s, "eval_s": eval_s, "epoch_s": train_s + eval_s,
            "note": f"extrapolated from {row['steps']} measured steps of {row['dataset']} to 390 steps "
                    f"+ 10,000 test images"}


# --- 2: mask update ------------------------------------------------------------------------------

def bench_mask_update(model: str, plan: Plan, info: dict) -> dict:
    """Seconds of one global threshold + mask update (80% -> 90%) over the model's prunable weights."""
    from suite.data import DataSpec
    from suite.models import build_model

    shape = MODEL_DATA[model][1]
    torch.manual_seed(0)
    net = build_model(model, DataSpec("bench", shape, 10, 1, 1)).to(plan.device)
    weights = M.prunable_weights(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for p in net.parameters():  # one step, so that every weight has a momentum buffer to zero
        p.grad = torch.randn_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    masked = M.MaskedWeights(weights)
    start = M.mask_at_sparsity(M.magnitude_scores(weights), FROM_SPARSITY)
    topk, install = [], []
    for rep in range(1 + plan.repeats):  # the first is the warm-up
        masked.install(start, optimizer)
        _sync(plan.device)
        t0 = time.perf_counter()
        mask = M.mask_at_sparsity(M.magnitude_scores(weights), TARGET_SPARSITY, alive=masked.mask)
        _sync(plan.device)
        t1 = time.perf_counter()
        masked.install(M.synchronise(mask, plan.device), optimizer)
        M.smallest_alive_magnitude(weights, masked.mask)  # what the runner logs as the threshold
        _sync(plan.device)
        t2 = time.perf_counter()
        if rep:
            topk.append(t1 - t0)
            install.append(t2 - t1)
    totals = [a + b for a, b in zip(topk, install)]
    return {"machine": info["label"], "load": load_1min(), "model": model, "weights": M.count_total(masked.mask),
            "from_sparsity": FROM_SPARSITY, "to_sparsity": TARGET_SPARSITY, "sparsity": M.sparsity_of(masked.mask),
            "repeats": plan.repeats, "topk_s": median(topk), "install_s": median(install), "total_s": median(totals)}


# --- 3: data path --------------------------------------------------------------------------------

def synthetic_source(name: str, n_train: int, n_test: int):
    """Random uint8 images shaped and typed as `name` (mnist or cifar10), behind the same dataset
    classes and normalisation as the real one, so both loaders do the real work."""
    from suite import data as D

    gen = torch.Generator().manual_seed(0)
    hw = (28, 28) if name == "mnist" else (32, 32, 3)
    x = torch.randint(0, 256, (n_train, *hw), dtype=torch.uint8, generator=gen).numpy()
    vx = torch.randint(0, 256, (n_test, *hw), dtype=torch.uint8, generator=gen).numpy()
    y, vy = (torch.arange(n) % 10 for n in (n_train, n_test))

    def chw(a) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t.unsqueeze(1).contiguous() if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()

    mean, std = (D.MNIST_MEAN, D.MNIST_STD) if name == "mnist" else (D.CIFAR_MEAN, D.CIFAR_STD)
    spec = D.DataSpec(name, tuple(chw(x[:1]).shape[1:]), 10, n_train, n_test)
    return D.Source(spec, chw(x), y, chw(vx), vy, D.RGBImages(x, y.numpy()), D.RGBImages(vx, vy.numpy()),
                    mean, std, augmentable=name != "mnist")


def bench_data_path(name: str, plan: Plan, info: dict) -> dict:
    """images/s of the device loader and of the torchvision DataLoader over the same batches."""
    from suite import data as D

    candidates = ("mnist",) if name == "mnist" else ("cifar10", "cifar10_subset")
    found = [c for c in candidates if not plan.synthetic and dataset_exists(c, plan.data_root)]
    if found:
        dataset = found[0]
        source = D.DATASETS[dataset](C.load_config(None, [f"data.name={dataset}", f"data.root={plan.data_root}"],
                                                   "dense").data)
    else:
        n = plan.data_batches * BATCH
        dataset, source = f"synthetic {name}", synthetic_source(name, n, BATCH)
    kw = dict(batch_size=BATCH, seed=0, rank=0, world_size=1, device=plan.device, augment=True)
    loaders = {"device": D.DeviceData(source, **kw)}
    for w in plan.workers:
        loaders[f"torchvision:{w}"] = D.TorchvisionData(source, num_workers=w, **kw)
    batches = min(cut_epochs(d, plan.data_batches) for d in loaders.values())

    def drain(data, epoch: int) -> None:
        for _x, _y in data.train_batches(epoch):
            pass

    rates: dict[str, float] = {}
    for key, data in loaders.items():
        drain(data, 0)  # warm-up
        repeats = plan.repeats if key == "device" else max(2, plan.repeats // 2)
        seconds = [_timed(lambda: drain(data, 1 + rep), plan.device) for rep in range(repeats)]
        rates[key] = batches * BATCH / median(seconds)
    by_workers = {key.split(":")[1]: rate for key, rate in rates.items() if key != "device"}
    best = max(by_workers, key=by_workers.get)
    return {"machine": info["label"], "load": load_1min(), "dataset": dataset,
            "augment": loaders["device"].augment, "batches": batches, "images": batches * BATCH,
            "device_images_per_s": rates["device"], "torchvision_images_per_s": by_workers[best],
            "torchvision_workers": int(best), "torchvision_by_workers": by_workers,
            "speedup": rates["device"] / by_workers[best]}


# --- 5: OpenLTH head to head ---------------------------------------------------------------------

def bench_openlth(plan: Plan, info: dict) -> dict:
    """Seconds per LeNet-300-100 MNIST epoch end to end with masks at 90%, and the bare compute."""
    from suite.trainer import evaluate, Runner

    epochs = 2 if plan.quick else 5
    dataset, data_overrides = pick_data(("mnist",), (1, 28, 28), plan, n_train=MNIST_TRAIN, n_test=MNIST_TEST)
    overrides = ["model.name=lenet300", *data_overrides, f"train.batch_size={BATCH}", "train.optimizer=sgd",
                 "train.lr=0.1", "train.momentum=0", "train.weight_decay=0", "train.lr_schedule=constant",
                 f"prune.target_sparsity={TARGET_SPARSITY}", "prune.t_start=0", "prune.t_end=0"]
    acc = accelerator_for(plan.device, "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        # train_epoch + evaluate, the loop's two parts, timed epoch by epoch after a warm-up epoch
        runner = make_runner("progressive", [*overrides, f"train.epochs={EPOCHS}"], acc, Path(tmp) / "loop")
        sparsity = install_mask(runner, TARGET_SPARSITY)
        train_s, eval_s = [], []
        for epoch in range(1 + epochs):
            _sync(plan.device)
            t0 = time.perf_counter()
            runner.train_epoch(0, epoch)
            _sync(plan.device)
            t1 = time.perf_counter()
            evaluate(runner.model, runner.data, runner.loss_fn, acc)
            _sync(plan.device)
            t2 = time.perf_counter()
            if epoch:
                train_s.append(t1 - t0)
                eval_s.append(t2 - t1)
        epoch_s = [a + b for a, b in zip(train_s, eval_s)]

        # the bare compute: the same model and SGD on batches made beforehand, nothing else
        batches = [(x.clone(), y.clone()) for x, y in runner.data.train_batches(0)]
        torch.manual_seed(0)
        from suite.models import build_model
        net = build_model("lenet300", runner.data.spec).to(plan.device)
        sgd = torch.optim.SGD(net.parameters(), lr=0.1)

        def bare_epoch() -> None:
            for x, y in batches:
                F.cross_entropy(net(x), y).backward()
                sgd.step()
                sgd.zero_grad(set_to_none=True)

        bare_s = [_timed(bare_epoch, plan.device) for _ in range(1 + epochs)][1:]

        # the whole runner, as `suite/run.py` drives it: one-shot 90% mask at the start (t_end 0)
        run_epochs = 2 if plan.quick else 3
        cfg = C.load_config(None, [*overrides, f"train.epochs={run_epochs}", "wandb.mode=disabled"], "progressive")
        result = Runner(cfg, Path(tmp) / "run", acc).run(progress=False)
    epoch, bare = median(epoch_s), median(bare_s)
    return {"machine": info["label"], "load": load_1min(), "model": "lenet300", "dataset": dataset,
            "train_images": runner.data.steps_per_epoch * BATCH, "test_images": runner.data.spec.n_test,
            "sparsity": sparsity, "epochs": epochs, "train_s": median(train_s), "eval_s": median(eval_s),
            "epoch_s": epoch, "run_epochs": run_epochs, "run_epoch_s": result["wall_time_s"] / run_epochs,
            "run_sparsity": result["achieved_sparsity"], "bare_s": bare, "epoch_over_bare": epoch / bare,
            "openlth_epoch_s": OPENLTH["epoch_s"], "openlth_train_s": OPENLTH["train_s"],
            "openlth_bare_s": OPENLTH["bare_s"], "speedup_vs_openlth": OPENLTH["epoch_s"] / epoch}


# --- targets and tables --------------------------------------------------------------------------

def check_targets(report: dict) -> list[dict]:
    """Every target of issue #5 with the measured value, met or missed, and by how much."""
    out = []

    def add(name: str, goal: str, measured: float | None, limit: float, kind: str, unit: str = "") -> None:
        met, text = verdict(measured, limit, kind, unit)
        out.append({"target": name, "goal": goal, "measured": measured, "met": met, "verdict": text})

    lth = report["openlth"]
    add("LeNet-300-100 / MNIST epoch incl. evaluation, masks 90%", f"<= {LENET_EPOCH_MAX_S} s",
        lth["epoch_s"] if lth else None, LENET_EPOCH_MAX_S, "max", " s")
    add("LeNet-300-100 / MNIST epoch over bare compute", f"<= {LENET_OVER_BARE_MAX}x",
        lth["epoch_over_bare"] if lth else None, LENET_OVER_BARE_MAX, "max", "x")
    for row in report["training"]:
        if report["device"] == "cpu":
            add(f"masked / dense step time, {row['model']} ({row['precision']})", f"<= {MASKED_RATIO_MAX}",
                row["ratio"], MASKED_RATIO_MAX, "max", "pts")
    largest = max(report["mask_update"], key=lambda r: r["weights"], default=None)
    name = f"{largest['weights'] / 1e6:.1f}M weights ({largest['model']})" if largest else "20M weights"
    add(f"global threshold + mask update, {name}", f"< {MASK_UPDATE_MAX_S} s",
        largest["total_s"] if largest else None, MASK_UPDATE_MAX_S, "max", " s")
    for row in report["data_path"]:
        add(f"device data path / torchvision, {row['dataset']}", f">= {DATA_SPEEDUP_MIN}x",
            row["speedup"], DATA_SPEEDUP_MIN, "min", "x")
    if report["device"] == "cuda":
        gpu = report["gpu_epoch"]
        add("ResNet-18 / CIFAR-10 epoch, bf16 + channels_last, masks 90%", f"< {GPU_EPOCH_MAX_S} s",
            gpu["epoch_s"] if gpu else None, GPU_EPOCH_MAX_S, "max", " s")
    return out


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    from tabulate import tabulate

    def cell(value, fmt):
        if value is None:
            return "-"
        return format(value, fmt) if fmt else value

    return tabulate([[cell(r.get(key), fmt) for _, key, fmt in columns] for r in rows],
                    headers=[h for h, _, _ in columns], tablefmt="github", disable_numparse=True)


def format_report(report: dict) -> str:
    """The tables a person reads (the JSON holds the same numbers unrounded)."""
    m = report["machine"]
    parts = [f"machine: {m['label']}; torch threads {m['torch_threads']}; load {report['load_start']:.2f} at "
             f"start, {report['load_end']:.2f} at end; {report['seconds']:.0f} s in all"]
    parts += ["", "training throughput (Runner.train_epoch, median images/s; ratio = masked / dense step time)",
              _table(report["training"], [
                  ("model", "model", ""), ("data", "dataset", ""), ("precision", "precision", ""),
                  ("channels_last", "channels_last", ""), ("steps", "steps", ""),
                  ("dense img/s", "dense_images_per_s", ".0f"), ("masked 90% img/s", "masked_images_per_s", ".0f"),
                  ("ratio", "ratio", ".3f"), ("load", "load", ".1f"), ("machine", "machine", "")])]
    parts += ["", f"global threshold + mask update, {FROM_SPARSITY:g} -> {TARGET_SPARSITY:g} (median seconds)",
              _table(report["mask_update"], [
                  ("model", "model", ""), ("weights", "weights", ",d"), ("top-k s", "topk_s", ".3f"),
                  ("install s", "install_s", ".3f"), ("total s", "total_s", ".3f"), ("load", "load", ".1f"),
                  ("machine", "machine", "")])]
    parts += ["", "data path (train batches of 128, median images/s)",
              _table(report["data_path"], [
                  ("data", "dataset", ""), ("augment", "augment", ""), ("images", "images", ",d"),
                  ("device img/s", "device_images_per_s", ".0f"),
                  ("torchvision img/s", "torchvision_images_per_s", ".0f"),
                  ("workers", "torchvision_workers", ""), ("speedup", "speedup", ".1f"), ("load", "load", ".1f"),
                  ("machine", "machine", "")])]
    if report["gpu_epoch"]:
        parts += ["", "GPU epoch (ResNet-18 / CIFAR-10, bf16, channels_last, masks 90%)",
                  _table([report["gpu_epoch"]], [
                      ("data", "dataset", ""), ("train s", "train_s", ".2f"), ("eval s", "eval_s", ".2f"),
                      ("epoch s", "epoch_s", ".2f"), ("note", "note", ""), ("machine", "machine", "")])]
    if report["openlth"]:
        lth = dict(report["openlth"])
        parts += ["", "OpenLTH head to head (LeNet-300-100, MNIST 60,000 + 10,000, batch 128, SGD, seconds per epoch)",
                  _table([
                      {"what": "epoch incl. test pass", "ours": lth["epoch_s"], "openlth": lth["openlth_epoch_s"]},
                      {"what": "training only", "ours": lth["train_s"], "openlth": lth["openlth_train_s"]},
                      {"what": f"whole Runner.run per epoch ({lth['run_epochs']} epochs)", "ours": lth["run_epoch_s"],
                       "openlth": None},
                      {"what": "bare compute (no mask, no loader)", "ours": lth["bare_s"],
                       "openlth": lth["openlth_bare_s"]},
                  ], [("", "what", ""), ("ours s", "ours", ".3f"), ("OpenLTH s (2-core)", "openlth", ".2f")])
                  + f"\ndata: {lth['dataset']}; masks at {lth['sparsity']:.4f}; load {lth['load']:.1f}; "
                    f"{lth['speedup_vs_openlth']:.1f}x OpenLTH's epoch; machine: {lth['machine']}"]
    parts += ["", "targets (issue #5)",
              _table(report["targets"], [("target", "target", ""), ("goal", "goal", ""),
                                         ("measured", "measured", ".3f"), ("verdict", "verdict", "")])]
    return "\n".join(parts)


# --- GPU first contact -------------------------------------------------------------------------------

GPU_CHECK_MODEL = "resnet18"


def _check(rows: list[dict], name: str, fn: Callable[[], dict], say: Callable[[str], None]) -> None:
    """Run one GPU check; a failure is a row, never the end of the command."""
    say(f"gpu-check: {name}")
    started = time.perf_counter()
    try:
        row = {"check": name, "status": "ok", **fn()}
    except Exception as e:  # noqa: BLE001 - the table says what failed and why
        first = str(e).strip().splitlines()[0] if str(e).strip() else "no message"
        row = {"check": name, "status": "failed", "detail": f"{type(e).__name__}: {first}"[:160]}
    row["seconds"] = time.perf_counter() - started
    rows.append(row)
    _free("cuda")


def _check_loader(plan: Plan) -> dict:
    """One epoch of the device loader (CIFAR-10 subset, augmentation on the GPU)."""
    from suite.data import build_data

    cfg = C.load_config(None, ["data.name=cifar10_subset", f"data.root={plan.data_root}"], "dense")
    data = build_data(cfg.data, batch_size=BATCH, seed=0, device="cuda")
    images = 0

    def drain() -> None:
        nonlocal images
        for x, _y in data.train_batches(0):
            images += len(x)

    seconds = _timed(drain, "cuda")
    return {"images_per_s": images / seconds, "detail": f"{images} images, device loader, augmented"}


def _check_training(plan: Plan, info: dict, precision: str, channels_last: bool, compile: bool = False) -> dict:
    row = bench_training(GPU_CHECK_MODEL, plan, info, precision, channels_last, compile)
    return {"images_per_s": row["masked_images_per_s"], "ratio": row["ratio"],
            "detail": f"{row['dataset']}; dense {row['dense_images_per_s']:.0f} img/s, masked at "
                      f"{row['sparsity']:.2f} {row['masked_images_per_s']:.0f} img/s"}


def _check_masks(plan: Plan, info: dict) -> dict:
    row = bench_mask_update(GPU_CHECK_MODEL, plan, info)
    return {"detail": f"top-k {row['topk_s']:.3f} s + install {row['install_s']:.3f} s over {row['weights']:,} weights, "
                      f"sparsity {row['sparsity']:.4f}"}


def _check_run(plan: Plan, folder: Path) -> dict:
    """A real 2-epoch progressive run (bf16, channels_last) through run_experiment; the pruned weights
    it saved must be exactly 0."""
    from safetensors.torch import load_file

    from suite.trainer import run_experiment

    cfg = C.load_config(None, [f"model.name={GPU_CHECK_MODEL}", "data.name=cifar10_subset",
                               f"data.root={plan.data_root}", "train.epochs=2", f"train.batch_size={BATCH}",
                               "train.precision=bf16", "train.channels_last=true", "prune.target_sparsity=0.9",
                               "wandb.mode=disabled"], "progressive")
    outcome = run_experiment(cfg, folder, accelerator_for("cuda", "bf16"), force=True, progress=False)
    result = outcome.result
    mask = load_file(str(outcome.run_dir / "mask.safetensors"))
    weights = load_file(str(outcome.run_dir / "model.safetensors"))
    leaked = sum(int(torch.count_nonzero(weights[k][m == 0])) for k, m in mask.items())
    if leaked:
        raise RuntimeError(f"{leaked} pruned weights are not 0 after training")
    images = 2 * outcome.runner.data.steps_per_epoch * BATCH
    return {"images_per_s": images / result["wall_time_s"], "run_dir": str(outcome.run_dir),
            "detail": f"test accuracy {result['final_test_accuracy']:.2f}% at sparsity "
                      f"{result['achieved_sparsity']:.4f}; pruned weights exactly 0; {result['wall_time_s']:.1f} s"}


def _check_semi_structured() -> dict:
    """The 2:4 kernels: a 4096 x 4096 fp16 Linear with a 2:4 magnitude mask, against its dense twin."""
    from torch.sparse import to_sparse_semi_structured

    from suite.cost import semi_structured_support

    why = semi_structured_support(torch.device("cuda"))
    if why:
        return {"status": "skipped", "detail": why}
    torch.manual_seed(0)
    weight = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    mask = M.mask_at_sparsity({"w": weight.abs()}, 0.5, structure="nm", nm=(2, 4))["w"]
    weight = weight * mask
    sparse = to_sparse_semi_structured(weight)
    x = torch.randn(256, 4096, device="cuda", dtype=torch.float16)
    dense_out, sparse_out = F.linear(x, weight), F.linear(x, sparse)
    diff = float((dense_out.float() - sparse_out.float()).abs().max())

    def best(fn) -> float:
        for _ in range(3):
            fn()
        return median([_timed(fn, "cuda") for _ in range(20)])

    dense_s, sparse_s = best(lambda: F.linear(x, weight)), best(lambda: F.linear(x, sparse))
    return {"images_per_s": 256 / sparse_s, "ratio": sparse_s / dense_s,
            "detail": f"batch 256, 4096x4096 fp16: 2:4 {sparse_s * 1e3:.3f} ms, dense {dense_s * 1e3:.3f} ms, "
                      f"max |diff| {diff:.2e}"}


def _check_cost(folder: str | None) -> dict:
    """suite.cost on the progressive run: every deployment format on the GPU."""
    from suite.cost import measure_run

    if folder is None:
        raise RuntimeError("the progressive run did not finish")
    cost = measure_run(Path(folder), torch.device("cuda"), warmup=2, repeats=5)
    formats = cost["formats"]
    bad = [k for k, f in formats.items() if f["status"] not in ("ok", "skipped")]
    if bad:
        raise RuntimeError(f"formats that do not match the masked model: {', '.join(bad)}")
    return {"detail": "; ".join(f"{k} {f['status']}" for k, f in formats.items())}


def gpu_check(plan: Plan, say: Callable[[str], None] = lambda text: None) -> list[dict]:
    """Every CUDA path once, each in its own row (status ok / failed / skipped)."""
    info = machine("cuda")
    rows: list[dict] = []
    _check(rows, "device data loader (CIFAR-10 subset)", lambda: _check_loader(plan), say)
    _check(rows, "ResNet-18 step fp32, masks 90%", lambda: _check_training(plan, info, "fp32", False), say)
    _check(rows, "ResNet-18 step bf16", lambda: _check_training(plan, info, "bf16", False), say)
    _check(rows, "ResNet-18 step bf16 + channels_last", lambda: _check_training(plan, info, "bf16", True), say)
    _check(rows, "ResNet-18 step bf16 + channels_last + compile",
           lambda: _check_training(plan, info, "bf16", True, compile=True), say)
    _check(rows, "global top-k + mask install (ResNet-18)", lambda: _check_masks(plan, info), say)
    with tempfile.TemporaryDirectory() as tmp:
        _check(rows, "2-epoch ResNet-18 progressive run (bf16, channels_last)", lambda: _check_run(plan, Path(tmp)), say)
        run_dir = rows[-1].get("run_dir")
        _check(rows, "suite.cost formats on that run", lambda: _check_cost(run_dir), say)
    _check(rows, "2:4 semi-structured kernels", _check_semi_structured, say)
    return rows


def format_gpu_check(rows: list[dict], info: dict) -> str:
    return f"GPU check on {info['label']}\n" + _table(rows, [
        ("check", "check", ""), ("status", "status", ""), ("images/s", "images_per_s", ".0f"),
        ("masked/dense time", "ratio", ".3f"), ("s", "seconds", ".1f"), ("detail", "detail", "")])


def gpu_check_main(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        print("error: --gpu-check: no CUDA device is visible to torch; run it on a machine with a GPU",
              file=sys.stderr, flush=True)
        return 2
    plan = Plan(device="cuda", quick=True, models=(GPU_CHECK_MODEL,), data_root=args.data_root,
                synthetic=args.synthetic)
    rows = gpu_check(plan, say=lambda text: print(f"bench: {text}", file=sys.stderr, flush=True))
    print(format_gpu_check(rows, machine("cuda")), flush=True)
    if args.json:
        from suite.results import write_json
        write_json(Path(args.json), {"gpu_check": rows, "machine": machine("cuda")})
    return 0 if all(r["status"] in ("ok", "skipped") for r in rows) else 1


# --- the command -----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pp-bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--models", nargs="+", default=list(MODEL_DATA),
                        help=f"models to benchmark, of: {' '.join(MODEL_DATA)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats, under a minute on a CPU")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the results here as JSON (default: none)")
    parser.add_argument("--data-root", default="../shared/data",
                        help="folder holding MNIST/raw and cifar10-subset/ (default: ../shared/data); "
                             "synthetic data of the same shape where a dataset is missing")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic data even where files exist")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--gpu-check", action="store_true",
                        help="run every CUDA path once (loader, bf16, channels_last, compile, masks, a 2-epoch "
                             "ResNet-18 progressive run on the CIFAR-10 subset under --data-root, suite.cost, the "
                             "2:4 kernels) and print one table; refuses without a GPU")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    if args.device not in ("cpu", "cuda"):
        raise C.ConfigError(f"--device: '{args.device}' is not one of cpu, cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise C.ConfigError("--device cuda: no CUDA device is visible to torch")
    unknown = [m for m in args.models if m not in MODEL_DATA]
    if unknown:
        raise C.ConfigError(f"--models: unknown {', '.join(unknown)} (valid: {', '.join(MODEL_DATA)})")
    if args.threads is not None and args.threads < 1:
        raise C.ConfigError(f"--threads: must be at least 1, got {args.threads}")
    models = tuple(dict.fromkeys(args.models))
    return Plan(device=args.device, quick=args.quick, models=models, data_root=args.data_root,
                synthetic=args.synthetic)


def run_all(plan: Plan, say: Callable[[str], None] = lambda text: None) -> dict:
    """Every section for `plan`; the report dict that --json writes."""
    started = time.perf_counter()
    info = machine(plan.device)
    report = {"device": plan.device, "quick": plan.quick, "models": list(plan.models), "machine": info,
              "load_start": load_1min()}
    report["training"] = []
    for precision, channels_last in gpu_variants(plan.device):
        for model in plan.models:
            say(f"training: {model} {precision}{' channels_last' if channels_last else ''}")
            report["training"].append(bench_training(model, plan, info, precision, channels_last))
            _free(plan.device)
    report["gpu_epoch"] = gpu_epoch(report["training"], info) if plan.device == "cuda" else None
    report["mask_update"] = []
    for model in plan.models:
        say(f"mask update: {model}")
        report["mask_update"].append(bench_mask_update(model, plan, info))
        _free(plan.device)
    report["data_path"] = []
    for name in ("mnist", "cifar10"):
        say(f"data path: {name}")
        report["data_path"].append(bench_data_path(name, plan, info))
        _free(plan.device)
    report["openlth"] = None
    if "lenet300" in plan.models:
        say("OpenLTH head to head: LeNet-300-100 / MNIST")
        report["openlth"] = bench_openlth(plan, info)
    report["targets"] = check_targets(report)
    report["load_end"] = load_1min()
    report["seconds"] = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.gpu_check:
        return gpu_check_main(args)
    try:
        plan = plan_from(args)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        load, cores = load_1min(), os.cpu_count() or 1
        if load > cores:
            print(f"bench: warning: load average {load:.2f} on {cores} cores: other processes compete for the CPU "
                  f"and timings will be noisy (with several torch threads, badly so; --threads 1 suffers least)",
                  file=sys.stderr, flush=True)
        report = run_all(plan, say=lambda text: print(f"bench: {text}", file=sys.stderr, flush=True))
    except C.ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print(format_report(report), flush=True)
    if args.json:
        from suite.results import write_json
        write_json(Path(args.json), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

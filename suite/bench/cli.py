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

6. GPT (suite/bench/gpt.py): the character GPT at nanoGPT's CPU recipe on Tiny Shakespeare (a synthetic
   text where the file is missing): tokens/s of the runner's step dense and with 80% masks on the
   block matrices (goal: masked / dense <= 1.05), of a plain PyTorch loop of the same model and
   batches (goal: runner / plain <= 1.10), and tokens/s per torch thread.

7. `--startup` (suite/startup.py), on its own: a run's way from a fresh Python to its first step,
   phase by phase, in fresh processes.

The targets of issues #5 and #22 are checked at the end and printed as met / missed by how much.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from suite.bench.common import MODEL_DATA, Plan, free_memory, load_1min, machine
from suite.bench.data_path import bench_data_path
from suite.bench.gpt import GPT_MODEL, bench_gpt
from suite.bench.gpu_check import gpu_check_main
from suite.bench.mask_update import bench_mask_update
from suite.bench.openlth import bench_openlth
from suite.bench.report import check_targets, format_report
from suite.bench.training import bench_training, gpu_epoch, gpu_variants
from suite.errors import ConfigError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pp-bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--models", nargs="+", default=[*MODEL_DATA, GPT_MODEL],
                        help=f"models to benchmark, of: {' '.join(MODEL_DATA)} {GPT_MODEL} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats, under a minute on a CPU")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the results here as JSON (default: none)")
    parser.add_argument("--data-root", default="../shared/data",
                        help="folder holding MNIST/raw and cifar10-subset/ (default: ../shared/data); "
                             "synthetic data of the same shape where a dataset is missing")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic data even where files exist")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--startup", action="store_true",
                        help="time a run's start-up instead, phase by phase to its first step, in fresh processes "
                             "(python -m suite.startup: its options follow --startup)")
    parser.add_argument("--gpu-check", action="store_true",
                        help="run every CUDA path once (loader, bf16, channels_last, compile, masks, a 2-epoch "
                             "ResNet-18 progressive run on the CIFAR-10 subset under --data-root, suite.cost, the "
                             "2:4 kernels) and print one table; refuses without a GPU")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    if args.device not in ("cpu", "cuda"):
        raise ConfigError(f"--device: '{args.device}' is not one of cpu, cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to torch")
    unknown = [m for m in args.models if m not in MODEL_DATA and m != GPT_MODEL]
    if unknown:
        raise ConfigError(f"--models: unknown {', '.join(unknown)} (valid: {', '.join([*MODEL_DATA, GPT_MODEL])})")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: must be at least 1, got {args.threads}")
    models = tuple(dict.fromkeys(args.models))
    return Plan(device=args.device, quick=args.quick, models=models, data_root=args.data_root,
                synthetic=args.synthetic)


def run_all(plan: Plan, say: Callable[[str], None] = lambda text: None) -> dict:
    """Every section for `plan`; the report dict that --json writes."""
    started = time.perf_counter()
    info = machine(plan.device)
    report = {"device": plan.device, "quick": plan.quick, "models": list(plan.models), "machine": info,
              "load_start": load_1min()}
    images = [m for m in plan.models if m in MODEL_DATA]
    report["training"] = []
    for precision, channels_last in gpu_variants(plan.device):
        for model in images:
            say(f"training: {model} {precision}{' channels_last' if channels_last else ''}")
            report["training"].append(bench_training(model, plan, info, precision, channels_last))
            free_memory(plan.device)
    report["gpu_epoch"] = gpu_epoch(report["training"], info) if plan.device == "cuda" else None
    report["mask_update"] = []
    for model in images:
        say(f"mask update: {model}")
        report["mask_update"].append(bench_mask_update(model, plan, info))
        free_memory(plan.device)
    report["data_path"] = []
    for name in ("mnist", "cifar10"):
        say(f"data path: {name}")
        report["data_path"].append(bench_data_path(name, plan, info))
        free_memory(plan.device)
    report["openlth"] = None
    if "lenet300" in plan.models:
        say("OpenLTH head to head: LeNet-300-100 / MNIST")
        report["openlth"] = bench_openlth(plan, info)
    report["gpt"] = None
    if GPT_MODEL in plan.models:
        say(f"GPT: {GPT_MODEL} dense, masked and a plain PyTorch loop")
        report["gpt"] = bench_gpt(plan, info)
        free_memory(plan.device)
    report["targets"] = check_targets(report)
    report["load_end"] = load_1min()
    report["seconds"] = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--startup"]:  # its own command, in fresh processes: this one has imported torch already
        from suite.startup import main as startup_main
        return startup_main(argv[1:])
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
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print(format_report(report), flush=True)
    if args.json:
        from suite.results import write_json
        write_json(Path(args.json), report)
    return 0

"""GPU first contact (--gpu-check): every GPU path of the suite run once, each as one row."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from suite import experiment as E
from suite import masks as M
from suite.bench.common import BATCH, Plan, accelerator_for, free_memory, machine, median, timed
from suite.bench.mask_update import bench_mask_update
from suite.bench.report import table
from suite.bench.training import bench_training


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
    free_memory("cuda")


def _check_loader(plan: Plan) -> dict:
    """One epoch of the device loader (CIFAR-10 subset, augmentation on the GPU)."""
    from suite.datasets import build_data

    cfg = E.load_config(None, ["data.name=cifar10_subset", f"data.root={plan.data_root}"], "dense")
    data = build_data(cfg.data, batch_size=BATCH, seed=0, device="cuda")
    images = 0

    def drain() -> None:
        nonlocal images
        for x, _y in data.train_batches(0):
            images += len(x)

    seconds = timed(drain, "cuda")
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

    cfg = E.load_config(None, [f"model.name={GPU_CHECK_MODEL}", "data.name=cifar10_subset",
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
        return median([timed(fn, "cuda") for _ in range(20)])

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
    return f"GPU check on {info['label']}\n" + table(rows, [
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

"""Sections 1 and 4: images/s of the runner's own step, dense against 90% masks (and the GPU variants, the ResNet-18 epoch)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from suite.bench.common import (BATCH, CIFAR10_TEST_IMAGES, CIFAR10_TRAIN_IMAGES, EPOCHS, MODEL_DATA, Plan, TARGET_SPARSITY,
                                accelerator_for, cut_epochs, install_mask, load_1min, make_runner, median, pick_data, timed)


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
                rates[name].append(runner.train_epoch(0, 1 + rep)["examples_per_s"])
        ratios = [d / m for d, m in zip(rates["dense"], rates["masked"])]  # per pair: same load
        eval_rate = None
        if plan.device == "cuda":  # the GPU epoch estimate needs the test pass too
            n_test = masked.data.spec.n_test
            evaluate(masked.model, masked.data, masked.loss_fn, acc)
            seconds = [timed(lambda: evaluate(masked.model, masked.data, masked.loss_fn, acc), plan.device)
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

"""Section 5: LeNet-300-100 on MNIST head to head with OpenLTH's seconds per epoch."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from suite import experiment as E
from suite.bench.common import (BATCH, EPOCHS, MNIST_TEST, MNIST_TRAIN, OPENLTH, Plan, TARGET_SPARSITY, accelerator_for,
                                install_mask, load_1min, make_runner, median, pick_data, sync, timed)


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
            sync(plan.device)
            t0 = time.perf_counter()
            runner.train_epoch(0, epoch)
            sync(plan.device)
            t1 = time.perf_counter()
            evaluate(runner.model, runner.data, runner.loss_fn, acc)
            sync(plan.device)
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

        bare_s = [timed(bare_epoch, plan.device) for _ in range(1 + epochs)][1:]

        # the whole runner, as `suite/run.py` drives it: one-shot 90% mask at the start (t_end 0)
        run_epochs = 2 if plan.quick else 3
        cfg = E.load_config(None, [*overrides, f"train.epochs={run_epochs}", "wandb.mode=disabled"], "progressive")
        result = Runner(cfg, Path(tmp) / "run", acc).run(progress=False)
    epoch, bare = median(epoch_s), median(bare_s)
    return {"machine": info["label"], "load": load_1min(), "model": "lenet300", "dataset": dataset,
            "train_images": runner.data.steps_per_epoch * BATCH, "test_images": runner.data.spec.n_test,
            "sparsity": sparsity, "epochs": epochs, "train_s": median(train_s), "eval_s": median(eval_s),
            "epoch_s": epoch, "run_epochs": run_epochs, "run_epoch_s": result["wall_time_s"] / run_epochs,
            "run_sparsity": result["achieved_sparsity"], "bare_s": bare, "epoch_over_bare": epoch / bare,
            "openlth_epoch_s": OPENLTH["epoch_s"], "openlth_train_s": OPENLTH["train_s"],
            "openlth_bare_s": OPENLTH["bare_s"], "speedup_vs_openlth": OPENLTH["epoch_s"] / epoch}

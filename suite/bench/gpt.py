"""Section 6: the character GPT (suite/gpt.py) at nanoGPT's CPU recipe (4 layers, 4 heads, width 128,
context 64, batch 12, AdamW at lr 1e-3 with weight decay on matrices, warm-up + cosine, gradients
clipped at norm 1: configs/gpt_shakespeare.yaml): the runner's step dense against 80% masks on the
block matrices (ratio = masked / dense step time), the runner's dense step against a plain PyTorch
loop of the same model and batches (forward, cross-entropy, backward, clipping, AdamW step on
pre-made tensors: no mask, no loader, no Accelerate, no schedule), tokens (predicted characters) per
second per torch thread, and the milliseconds of the mask enforcement alone (weights before the
forward, gradients, weights after the step).
Runs alternate ABBA, so drift in a shared machine's load hits both sides alike."""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from suite.bench.common import (EPOCHS, Plan, accelerator_for, cut_epochs, dataset_exists, install_mask, load_1min,
                                make_runner, median, timed)

GPT_MODEL = "gpt_char"
GPT_BATCH, GPT_CONTEXT, GPT_LR = 12, 64, 1e-3  # nanoGPT's shakespeare_char CPU recipe
GPT_DECAY, GPT_BETAS, GPT_CLIP = 0.1, (0.9, 0.99), 1.0
GPT_SPARSITY = 0.8          # of the block matrices, as configs/gpt_shakespeare.yaml
GPT_MASKED_RATIO_MAX = 1.05  # masked / dense step time (issue #22)
GPT_OVER_PLAIN_MAX = 1.10    # the runner's step / a plain PyTorch loop's (issue #22)


def gpt_data(plan: Plan, steps: int) -> tuple[str, list[str]]:
    """Tiny Shakespeare where found under --data-root, else a synthetic text long enough for `steps`."""
    if not plan.synthetic and dataset_exists("shakespeare_char", plan.data_root):
        return "shakespeare_char", ["data.name=shakespeare_char", f"data.root={plan.data_root}"]
    chars = (steps + 2) * GPT_BATCH * GPT_CONTEXT * 2
    return "synthetic_text", ["data.name=synthetic_text", f"data.synthetic_train={chars}"]


def plain_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One step as a plain PyTorch loop (nanoGPT's) writes it."""
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), GPT_CLIP)
    opt.step()


def bench_gpt(plan: Plan, info: dict) -> dict:
    """The GPT row: dense, masked and plain tokens/s of the same model, batches and optimizer."""
    steps, repeats = (5, 2) if plan.quick else (40, 5)
    dataset, data_overrides = gpt_data(plan, steps)
    overrides = [f"model.name={GPT_MODEL}", *data_overrides, f"data.context={GPT_CONTEXT}",
                 f"train.batch_size={GPT_BATCH}", f"train.epochs={EPOCHS}", "train.optimizer=adamw",
                 f"train.lr={GPT_LR}", f"train.weight_decay={GPT_DECAY}", f"train.betas={list(GPT_BETAS)}",
                 "train.lr_schedule=warmup_cosine", "train.warmup_steps=100", "train.min_lr=1e-4",
                 f"train.grad_clip={GPT_CLIP}",
                 f"prune.target_sparsity={GPT_SPARSITY}"]
    acc = accelerator_for(plan.device, "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        dense = make_runner("dense", overrides, acc, Path(tmp) / "dense")
        masked = make_runner("progressive", overrides, acc, Path(tmp) / "masked")
        sparsity = install_mask(masked, GPT_SPARSITY)
        steps = min(cut_epochs(dense.data, steps), cut_epochs(masked.data, steps))
        batches = [(x.clone(), y.clone()) for x, y in dense.data.train_batches(0)]
        model = copy.deepcopy(dense.model)
        opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.dim() >= 2]},
                                 {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}],
                                lr=GPT_LR, betas=GPT_BETAS, weight_decay=GPT_DECAY)
        tokens = sum(y.numel() for _, y in batches)

        def plain() -> None:
            for x, y in batches:
                plain_step(model, opt, x, y)

        plain()  # warm-up, as each runner's first epoch below
        for runner in (dense, masked):
            runner.train_epoch(0, 0)
        rates: dict[str, list[float]] = {"dense": [], "masked": [], "plain": []}
        for rep in range(repeats):
            order = [("dense", dense), ("masked", masked), ("plain", None)]
            for name, runner in (order if rep % 2 == 0 else order[::-1]):  # ABBA
                if runner is None:
                    rates[name].append(tokens / timed(plain, plan.device))
                else:
                    rates[name].append(runner.train_epoch(0, 1 + rep)["examples_per_s"])
        def enforce() -> None:  # what the masked step adds: the mask applied at its three points
            masked.masked.apply_to_weights()
            masked.masked.apply_to_grads()
            masked.masked.apply_to_weights()

        for w in masked.weights.values():  # the step's zero_grad dropped them: time a real gradient's masking
            w.grad = torch.ones_like(w)
        enforce_s = median([timed(enforce, plan.device) for _ in range(20)])
    threads = torch.get_num_threads()
    masked_ratio = median([d / m for d, m in zip(rates["dense"], rates["masked"])])  # per pair: same load
    over_plain = median([p / d for p, d in zip(rates["plain"], rates["dense"])])
    return {"machine": info["label"], "load": load_1min(), "model": GPT_MODEL, "dataset": dataset,
            "batch_size": GPT_BATCH, "context": GPT_CONTEXT, "steps": steps, "repeats": repeats,
            "sparsity": sparsity, "threads": threads,
            "dense_tokens_per_s": median(rates["dense"]), "masked_tokens_per_s": median(rates["masked"]),
            "plain_tokens_per_s": median(rates["plain"]),
            "dense_step_ms": 1e3 * GPT_BATCH * GPT_CONTEXT / median(rates["dense"]),
            "enforce_ms": 1e3 * enforce_s, "masked_over_dense": masked_ratio, "suite_over_plain": over_plain,
            "tokens_per_s_per_thread": median(rates["dense"]) / threads}

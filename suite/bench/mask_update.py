"""Section 2: one progressive mask update (global top-k, synchronise, install) on the model's weights."""
from __future__ import annotations

import time

import torch

from suite import masks as M
from suite.bench.common import FROM_SPARSITY, MODEL_DATA, Plan, TARGET_SPARSITY, load_1min, median, sync


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
        sync(plan.device)
        t0 = time.perf_counter()
        mask = M.mask_at_sparsity(M.magnitude_scores(weights), TARGET_SPARSITY, alive=masked.mask)
        sync(plan.device)
        t1 = time.perf_counter()
        masked.install(M.synchronise(mask, plan.device), optimizer)
        M.smallest_alive_magnitude(weights, masked.mask)  # what the runner logs as the threshold
        sync(plan.device)
        t2 = time.perf_counter()
        if rep:
            topk.append(t1 - t0)
            install.append(t2 - t1)
    totals = [a + b for a, b in zip(topk, install)]
    return {"machine": info["label"], "load": load_1min(), "model": model, "weights": M.count_total(masked.mask),
            "from_sparsity": FROM_SPARSITY, "to_sparsity": TARGET_SPARSITY, "sparsity": M.sparsity_of(masked.mask),
            "repeats": plan.repeats, "topk_s": median(topk), "install_s": median(install), "total_s": median(totals)}

"""The targets of issues #5 and #22 checked, and the printed tables."""
from __future__ import annotations

from suite.bench.common import (DATA_SPEEDUP_MIN, FROM_SPARSITY, GPU_EPOCH_MAX_S, LENET_EPOCH_MAX_S, LENET_OVER_BARE_MAX,
                                MASKED_RATIO_MAX, MASK_UPDATE_MAX_S, TARGET_SPARSITY, verdict)
from suite.bench.gpt import GPT_MASKED_RATIO_MAX, GPT_OVER_PLAIN_MAX


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
    gpt = report.get("gpt")
    if gpt is not None:
        add(f"masked / dense step time, {gpt['model']} (masks {gpt['sparsity']:.0%} of the block matrices)",
            f"<= {GPT_MASKED_RATIO_MAX}", gpt["masked_over_dense"], GPT_MASKED_RATIO_MAX, "max", "pts")
        add(f"runner step / plain PyTorch loop, {gpt['model']}", f"<= {GPT_OVER_PLAIN_MAX}",
            gpt["suite_over_plain"], GPT_OVER_PLAIN_MAX, "max", "pts")
    if report["device"] == "cuda":
        gpu = report["gpu_epoch"]
        add("ResNet-18 / CIFAR-10 epoch, bf16 + channels_last, masks 90%", f"< {GPU_EPOCH_MAX_S} s",
            gpu["epoch_s"] if gpu else None, GPU_EPOCH_MAX_S, "max", " s")
    return out


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
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
              table(report["training"], [
                  ("model", "model", ""), ("data", "dataset", ""), ("precision", "precision", ""),
                  ("channels_last", "channels_last", ""), ("steps", "steps", ""),
                  ("dense img/s", "dense_images_per_s", ".0f"), ("masked 90% img/s", "masked_images_per_s", ".0f"),
                  ("ratio", "ratio", ".3f"), ("load", "load", ".1f"), ("machine", "machine", "")])]
    parts += ["", f"global threshold + mask update, {FROM_SPARSITY:g} -> {TARGET_SPARSITY:g} (median seconds)",
              table(report["mask_update"], [
                  ("model", "model", ""), ("weights", "weights", ",d"), ("top-k s", "topk_s", ".3f"),
                  ("install s", "install_s", ".3f"), ("total s", "total_s", ".3f"), ("load", "load", ".1f"),
                  ("machine", "machine", "")])]
    parts += ["", "data path (train batches of 128, median images/s)",
              table(report["data_path"], [
                  ("data", "dataset", ""), ("augment", "augment", ""), ("images", "images", ",d"),
                  ("device img/s", "device_images_per_s", ".0f"),
                  ("torchvision img/s", "torchvision_images_per_s", ".0f"),
                  ("workers", "torchvision_workers", ""), ("speedup", "speedup", ".1f"), ("load", "load", ".1f"),
                  ("machine", "machine", "")])]
    if report["gpu_epoch"]:
        parts += ["", "GPU epoch (ResNet-18 / CIFAR-10, bf16, channels_last, masks 90%)",
                  table([report["gpu_epoch"]], [
                      ("data", "dataset", ""), ("train s", "train_s", ".2f"), ("eval s", "eval_s", ".2f"),
                      ("epoch s", "epoch_s", ".2f"), ("note", "note", ""), ("machine", "machine", "")])]
    if report["openlth"]:
        lth = dict(report["openlth"])
        parts += ["", "OpenLTH head to head (LeNet-300-100, MNIST 60,000 + 10,000, batch 128, SGD, seconds per epoch)",
                  table([
                      {"what": "epoch incl. test pass", "ours": lth["epoch_s"], "openlth": lth["openlth_epoch_s"]},
                      {"what": "training only", "ours": lth["train_s"], "openlth": lth["openlth_train_s"]},
                      {"what": f"whole Runner.run per epoch ({lth['run_epochs']} epochs)", "ours": lth["run_epoch_s"],
                       "openlth": None},
                      {"what": "bare compute (no mask, no loader)", "ours": lth["bare_s"],
                       "openlth": lth["openlth_bare_s"]},
                  ], [("", "what", ""), ("ours s", "ours", ".3f"), ("OpenLTH s (2-core)", "openlth", ".2f")])
                  + f"\ndata: {lth['dataset']}; masks at {lth['sparsity']:.4f}; load {lth['load']:.1f}; "
                    f"{lth['speedup_vs_openlth']:.1f}x OpenLTH's epoch; machine: {lth['machine']}"]
    if report.get("gpt"):
        g = report["gpt"]
        parts += ["", f"GPT ({g['model']} on {g['dataset']}, batch {g['batch_size']} x context {g['context']}, AdamW + clipping; "
                      f"median tokens/s; masks at {g['sparsity']:.4f} of the block matrices)",
                  table([g], [("steps", "steps", ""), ("dense tok/s", "dense_tokens_per_s", ".0f"),
                              ("masked tok/s", "masked_tokens_per_s", ".0f"), ("plain loop tok/s", "plain_tokens_per_s", ".0f"),
                              ("dense step ms", "dense_step_ms", ".1f"), ("enforce ms", "enforce_ms", ".2f"),
                              ("masked/dense", "masked_over_dense", ".3f"),
                              ("runner/plain", "suite_over_plain", ".3f"), ("threads", "threads", ""),
                              ("tok/s per thread", "tokens_per_s_per_thread", ".0f"), ("load", "load", ".1f"),
                              ("machine", "machine", "")])]
    parts += ["", "targets (issues #5 and #22)",
              table(report["targets"], [("target", "target", ""), ("goal", "goal", ""),
                                         ("measured", "measured", ".3f"), ("verdict", "verdict", "")])]
    return "\n".join(parts)

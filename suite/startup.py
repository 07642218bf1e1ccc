"""Start-up cost of a run: the seconds from a fresh Python to its first training step, by phase.

    python -m suite.startup [--repeats 5] [--wandb] [key=value ...]   (default: the quick start's config)

Each repeat is a fresh process (imports are cold for Python, warm for the disk cache) that times, in
order: torch's own import (and torch._dynamo's, which any torch optimizer imports), the suite's other imports (suite.run, the trainer, Accelerate), the config,
the Accelerator, the data, the model, its FLOP count, W&B offline (with --wandb), and the first
training step. The table gives the median and the range over the repeats, and the total beyond torch's
import; the 1-minute load average is printed beside it, since a busy machine stretches every phase."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
TORCH = ("torch import", "torch._dynamo import")  # torch's own: every optimizer's constructor imports torch._dynamo
PHASES = (*TORCH, "suite imports", "config", "accelerator", "data", "model", "flops", "wandb offline",
          "first step")


def _timed(record: dict, phase: str, fn):
    """fn wrapped so that its calls add their seconds to record[phase]."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record[phase] = record.get(phase, 0.0) + time.perf_counter() - start
    return wrapper


def child(config: str | None, overrides: list[str], wandb: bool) -> dict:
    """One fresh process's phases, in seconds (run by `main` as `python -m suite.startup --child`)."""
    seconds: dict = {}
    start = time.perf_counter()
    import torch
    seconds["torch import"] = time.perf_counter() - start
    start = time.perf_counter()
    import torch._dynamo  # noqa: F401 - torch.optim.Optimizer() imports it: torch's cost, timed on its own
    seconds["torch._dynamo import"] = time.perf_counter() - start
    start = time.perf_counter()
    from accelerate import Accelerator

    import suite.run  # noqa: F401 - what `python suite/run.py` imports before it trains
    from suite import experiment as E
    from suite import trainer as T
    seconds["suite imports"] = time.perf_counter() - start
    start = time.perf_counter()
    cfg = E.with_processes(E.load_config(config, [*overrides, f"wandb.mode={'offline' if wandb else 'disabled'}"]), 1)
    seconds["config"] = time.perf_counter() - start
    start = time.perf_counter()
    accelerator = Accelerator(cpu=True, log_with="wandb" if wandb else None)
    seconds["accelerator"] = time.perf_counter() - start
    T.build_data = _timed(seconds, "data", T.build_data)
    T.build_model = _timed(seconds, "model", T.build_model)
    T.FL.count_model_flops = _timed(seconds, "flops", T.FL.count_model_flops)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = E.run_dir(cfg, tmp)
        run_dir.mkdir(parents=True)
        if wandb:
            start = time.perf_counter()
            T.T.start_tracking(accelerator, cfg, run_dir, "offline")
            seconds["wandb offline"] = time.perf_counter() - start
        runner = T.Runner(cfg, run_dir, accelerator)
        start = time.perf_counter()
        runner.new_optimizer()
        batches = runner.data.train_batches
        runner.data.train_batches = lambda epoch: iter([next(iter(batches(epoch)))])  # one step
        runner.train_epoch(0, 0)
        seconds["first step"] = time.perf_counter() - start
        if wandb:
            T.T.finish_tracking(accelerator, run_dir)
    seconds["threads"] = torch.get_num_threads()
    return seconds


def measure(config: str | None, overrides: list[str], repeats: int, wandb: bool) -> list[dict]:
    """`repeats` fresh processes' phases."""
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, "-m", "suite.startup", "--child", *(["--config", config] if config else []),
               *(["--wandb"] if wandb else []), *overrides]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                              env={**os.environ, "WANDB_SILENT": "true"})
        if proc.returncode != 0:
            raise RuntimeError(f"start-up probe failed: {proc.stderr.strip().splitlines()[-1:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return runs


def table(runs: list[dict]) -> str:
    """Median and range per phase, then the total to the first step beyond torch's import."""
    from tabulate import tabulate
    rows = []
    for phase in PHASES:
        values = [r[phase] for r in runs if phase in r]
        if values:
            rows.append([phase, f"{statistics.median(values):.2f}", f"{min(values):.2f}-{max(values):.2f}"])
    beyond = [sum(v for k, v in r.items() if k in PHASES and k not in TORCH) for r in runs]
    rows.append(["to first step, beyond torch", f"{statistics.median(beyond):.2f}", f"{min(beyond):.2f}-{max(beyond):.2f}"])
    return tabulate(rows, headers=["phase", "median s", "range s"], tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suite.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(QUICKSTART), help="config file (default: configs/quickstart.yaml)")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes to time (default 5)")
    parser.add_argument("--wandb", action="store_true", help="also start W&B offline (default: off)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.config, args.overrides, args.wandb)), flush=True)
        return 0
    if args.repeats < 1:
        print("error: --repeats must be at least 1", file=sys.stderr)
        return 2
    runs = measure(args.config, args.overrides, args.repeats, args.wandb)
    load = os.getloadavg()[0]
    print(f"start-up of {args.config} {' '.join(args.overrides)}: {args.repeats} fresh processes, "
          f"load average {load:.2f} on {os.cpu_count()} cores, {runs[0]['threads']} thread(s)")
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

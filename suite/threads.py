"""How many CPU threads a process uses, chosen on purpose rather than left to torch (all cores per process).

On a CPU, a small model's matrix products are too small to split: one thread per process is as fast on
an idle machine and does not collapse when other jobs share the cores (the quick start took 68.5 s at
torch's default on a shared 2-core machine, 5.5 s at one thread). A larger model gets its share of the
cores: the cores this process may use (a sweep's --jobs J gives each run cores/J) divided by the
processes on this machine. OMP_NUM_THREADS, when set, wins."""
from __future__ import annotations

import os

CORES_ENV = "PP_CORES"  # the cores one run may use; set by launch/sweep.py to cores / jobs
SMALL_MODEL_FLOPS = 50e6  # dense forward FLOPs per example below which a CPU run uses one thread


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, as taskset or SLURM set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _positive(text: str | None) -> int | None:
    try:
        value = int(text) if text else None
    except ValueError:
        return None
    return value if value is not None and value >= 1 else None


def choose_threads(device_type: str, forward_flops: float, local_processes: int,
                   environ: dict | None = None) -> tuple[int, str]:
    """The thread count for one process and why, in words (printed, and recorded in result.json)."""
    environ = os.environ if environ is None else environ
    fixed = _positive(environ.get("OMP_NUM_THREADS"))
    if fixed is not None:
        return fixed, "OMP_NUM_THREADS"
    if device_type == "cpu" and forward_flops < SMALL_MODEL_FLOPS:
        return 1, "a small model on the CPU"
    cores = _positive(environ.get(CORES_ENV)) or available_cores()
    processes = max(1, local_processes)
    source = f"{CORES_ENV}={cores}" if _positive(environ.get(CORES_ENV)) else f"{cores} cores"
    return max(1, cores // processes), f"{source} / {processes} process{'es' if processes > 1 else ''}"


def threads_line(threads: int, why: str) -> str:
    """The line a run prints: the count, why, and how to set it."""
    hint = "" if why == "OMP_NUM_THREADS" else "; OMP_NUM_THREADS=n sets it"
    return f"threads: {threads} per process ({why}{hint})"

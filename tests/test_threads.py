"""suite/threads.py: a run's thread count, chosen on purpose, printed and recorded (issue 25 case 16)."""
import os

import pytest

from helpers import ROOT, TINY, env, result, run_folder
from suite.threads import SMALL_MODEL_FLOPS, available_cores, choose_threads


@pytest.mark.parametrize("device, flops, processes, environ, chosen", [
    ("cpu", 0.53e6, 1, {}, (1, "a small model on the CPU")),  # LeNet-300-100: 0.53 MFLOPs per example
    ("cpu", SMALL_MODEL_FLOPS, 1, {"PP_CORES": "8"}, (8, "PP_CORES=8 / 1 process")),
    ("cpu", 1.1e9, 2, {"PP_CORES": "8"}, (4, "PP_CORES=8 / 2 processes")),
    ("cpu", 1.1e9, 16, {"PP_CORES": "8"}, (1, "PP_CORES=8 / 16 processes")),
    ("cuda", 0.53e6, 1, {"PP_CORES": "6"}, (6, "PP_CORES=6 / 1 process")),
    ("cpu", 1.1e9, 1, {"OMP_NUM_THREADS": "3", "PP_CORES": "8"}, (3, "OMP_NUM_THREADS")),
    ("cpu", 0.53e6, 1, {"OMP_NUM_THREADS": "2"}, (2, "OMP_NUM_THREADS")),  # set on purpose: it wins
    ("cpu", 0.53e6, 1, {"OMP_NUM_THREADS": "0"}, (1, "a small model on the CPU")),  # not a count: ignored
])
def test_the_thread_count_and_its_reason(device, flops, processes, environ, chosen):
    assert choose_threads(device, flops, processes, environ) == chosen


def test_a_large_model_without_settings_takes_the_cores_this_process_may_use():
    cores = len(os.sched_getaffinity(0))
    assert available_cores() == cores
    assert choose_threads("cpu", 1e9, 1, {}) == (cores, f"{cores} cores / 1 process")


def _run(tmp_path, **extra):
    import subprocess
    import sys
    e = env(**extra)
    if "OMP_NUM_THREADS" not in extra:
        del e["OMP_NUM_THREADS"]  # as a user runs it: torch alone would take every core
    proc = subprocess.run([sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(tmp_path),
                           *TINY], capture_output=True, text=True, cwd=ROOT, env=e, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc, result(run_folder(proc.stdout))


def test_a_plain_run_of_a_small_model_trains_on_one_thread_and_says_so(tmp_path):
    """Before: torch's default, every core per process (68.5 s against 5.5 s for the quick start on a
    shared 2-core machine), neither printed nor chosen."""
    proc, r = _run(tmp_path)
    assert "threads: 1 per process (a small model on the CPU; OMP_NUM_THREADS=n sets it)" in proc.stderr.splitlines()
    assert (r["threads"], r["threads_chosen_by"]) == (1, "a small model on the CPU")


def test_omp_num_threads_sets_the_count_recorded_and_not_repeated_back(tmp_path):
    proc, r = _run(tmp_path, OMP_NUM_THREADS="2")
    assert not any(line.startswith("threads:") for line in proc.stderr.splitlines())  # the user's own setting
    assert (r["threads"], r["threads_chosen_by"]) == (2, "OMP_NUM_THREADS")

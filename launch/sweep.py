"""Expand a sweep file into runs of suite/run.py and run them: one after another, on N GPUs, as
Accelerate DDP jobs, or as a SLURM job array.

    python launch/sweep.py configs/sweeps/quickstart.yaml [key=value ...] [--out runs]
        [--backend local|accelerate|slurm|print] [--dry-run] [--gpus N] [--jobs N] [--submit]
        [--retry-failed]

A run's folder (suite.experiment.run_dir) is the only state: finished runs (result.json) are skipped, an
interrupted run resumes from its checkpoint when run.py sees it again, a failed one (failed.json)
is left alone unless --retry-failed, and a result.json that does not parse or lacks a field is reported
and run again. Exit (suite.exits): 0 every run finished, 1 some run failed (or an unexpected error:
one line, the traceback in <out>/sweeps/<name>/error.log), 2 bad input, 3 some run is still training
in another process (nothing failed; run the same command again once it is done), 75 interrupted (run the
same command again to go on).
"""
import sys
from pathlib import Path

if __name__ == "__main__":
    # run as a script, this folder is sys.path[0]: the repo root instead, so `launch` imports as the package
    # (and its modules never as top-level names) without installing it
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from launch.cli import main

    sys.exit(main())

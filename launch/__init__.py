"""Sweeps: a sweep file expanded into runs of suite/run.py, run by a backend (`python launch/sweep.py`).

Modules import only downward, in this order (none imports another's private names):

    sweepfile   the sweep file's schema, read and checked into a Sweep; paths from the repo root
    grid        a grid sweep as runs: the cartesian product, merged folders, chain methods (LTH)
    ablations   an ablation sweep as runs: every kind of ablation of every finished source
    plan        a sweep file's runs, whichever kind it is
    accounting  what the runs did: each folder's state, a finished process's outcome, the log, the summary
    backends    the commands of a run, the local process pool (local, accelerate) and the SLURM job array
    cli         the command line (`python launch/sweep.py`, the entry script)

The names below are the package's public entry points.
"""
from launch.ablations import NOT_APPLICABLE, NOT_FINISHED, ablation_sources, expand_ablations
from launch.accounting import STATES, Outcome, Status, SweepLog, classify, failure_reason, run_status
from launch.backends import (Task, accelerate_command, executable, execute, gpu_slots, run_command, shell_line,
                             slurm_script, visible_gpus)
from launch.cli import main, parse_args
from launch.grid import Expansion, Run, chain_methods, chain_sparsities, describe_chain, expand_grid
from launch.plan import expand
from launch.sweepfile import Ablate, Sweep, format_value, load_sweep

__all__ = ["Ablate", "Expansion", "NOT_APPLICABLE", "NOT_FINISHED", "Outcome", "STATES", "Status", "Sweep",
           "Run", "SweepLog", "Task", "ablation_sources", "accelerate_command", "chain_methods", "chain_sparsities",
           "classify", "describe_chain", "executable", "execute", "expand", "expand_ablations", "expand_grid",
           "failure_reason", "format_value", "gpu_slots", "load_sweep", "main", "parse_args", "run_command",
           "run_status", "shell_line", "slurm_script", "visible_gpus"]

"""A sweep file's runs: its grids' (launch.grid), or an ablation sweep's (launch.ablations)."""
from __future__ import annotations

from pathlib import Path

from launch.ablations import expand_ablations
from launch.grid import Expansion, expand_grid
from launch.sweepfile import Sweep


def expand(sweep: Sweep, out: str | Path, out_arg: str | None = None) -> Expansion:
    """The runs of `sweep`: `expand_grid` for a grid sweep, `expand_ablations` for an ablation sweep. `out`
    locates the folders; `out_arg` is the --out that run.py gets (default: `out`)."""
    if sweep.ablate is not None:
        return expand_ablations(sweep, out, out_arg)
    return expand_grid(sweep, out, out_arg)

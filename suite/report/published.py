"""Numbers from the literature (configs/published.yaml): compared against, never re-run here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from suite import stats
from suite.config import ConfigError, read_yaml

DEFAULT_PUBLISHED = Path(__file__).resolve().parent.parent.parent / "configs" / "published.yaml"


@dataclass(frozen=True)
class Published:
    """One number from the literature, compared against but never re-run here."""
    method: str
    model: str
    dataset: str
    target_sparsity: float
    accuracy: float            # percent
    spread: float              # the paper's +- value when it gives one, else NaN
    source: str
    approximate: bool
    note: str
    checked: str               # how far the number was verified against its source
    sparsity_tolerance: float  # |ours - published| within this counts as the same sparsity
    runs: int | None = None    # how many runs the published mean +- spread is over, when the source says
    own: bool = False          # the research's own claim (not a number of another paper it compares with)


def load_published(path: Path) -> list[Published]:
    """Parse configs/published.yaml; each problem is one ConfigError line naming the entry."""
    tree = read_yaml(path, "published references file")
    entries = (tree or {}).get("references") if isinstance(tree, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a top-level 'references:' list")
    allowed = {f.name for f in dataclasses.fields(Published)}
    out = []
    for i, e in enumerate(entries):
        where = f"{path}: references[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = sorted(set(e) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}' (valid: {', '.join(sorted(allowed))})")
        for key in ("method", "model", "dataset", "target_sparsity", "accuracy", "source"):
            if e.get(key) is None:
                raise ConfigError(f"{where}: missing '{key}'")
        s, acc = e["target_sparsity"], e["accuracy"]
        if not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ConfigError(f"{where}: target_sparsity must be a fraction in [0, 1), got {s!r}")
        if not isinstance(acc, (int, float)) or not 0 <= acc <= 100:
            raise ConfigError(f"{where}: accuracy must be in percent (0-100), got {acc!r}")
        spread = e.get("spread")
        runs = e.get("runs")
        if runs is not None and (not isinstance(runs, int) or isinstance(runs, bool) or runs < 1):
            raise ConfigError(f"{where}: runs must be a positive whole number, got {runs!r}")
        out.append(Published(str(e["method"]), str(e["model"]), str(e["dataset"]), float(s), float(acc),
                             float(spread) if spread is not None else stats.NAN, str(e["source"]),
                             bool(e.get("approximate", False)), str(e.get("note", "")),
                             str(e.get("checked", "")), float(e.get("sparsity_tolerance", 0.0005)), runs,
                             bool(e.get("own", False))))
    return out


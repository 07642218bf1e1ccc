"""Numbers from the literature (configs/published.yaml): compared against, never re-run here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from suite import stats
from suite.config import read_yaml
from suite.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_PUBLISHED = REPO / "configs" / "published.yaml"


def stated_epochs(model: str, dataset: str) -> int | None:
    """Epochs of the seed config for this model and data (configs/<model>_<data>.yaml): the suite's stated
    protocol for it (the research's recipe, not necessarily the paper's whose number is compared)."""
    for path in sorted((REPO / "configs").glob("*.yaml")):
        tree = read_yaml(path, "config file")
        if isinstance(tree, dict) and (tree.get("model") or {}).get("name") == model \
                and (tree.get("data") or {}).get("name") == dataset:
            return (tree.get("train") or {}).get("epochs")
    return None


def claim_outcome(diff: float, p: float, ci_low: float, ci_high: float, n: int, alpha: float,
                  higher_is_better: bool, margin: float, per_cycle: float | None, stated: float | None) -> str:
    """The outcome of one of our groups against a published number, in the words every section uses:
    'confirmed and exceeded', 'confirmed', 'not shown at this budget', 'not shown with these seeds' or
    'differs under this suite's recipe'."""
    if n < 2 or p != p:
        return "not shown (no test with fewer than 2 seeds)"
    better = (diff > 0) == higher_is_better
    shortfall_ruled_out = ci_low >= -margin if higher_is_better else ci_high <= margin
    if p < alpha and better:
        return "confirmed and exceeded"
    if p >= alpha and shortfall_ruled_out:
        return "confirmed"
    if p >= alpha:
        return "not shown with these seeds"
    if stated is not None and per_cycle is not None and per_cycle < stated:
        return "not shown at this budget"
    return "differs under this suite's recipe"


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
    metric: str = "test_accuracy"  # the metric the number is of (a result's metric name): compared only with it


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
        metric = str(e.get("metric", "test_accuracy"))
        if not isinstance(acc, (int, float)) or (metric.endswith("accuracy") and not 0 <= acc <= 100):
            raise ConfigError(f"{where}: accuracy must be in percent (0-100), got {acc!r}")
        spread = e.get("spread")
        runs = e.get("runs")
        if runs is not None and (not isinstance(runs, int) or isinstance(runs, bool) or runs < 1):
            raise ConfigError(f"{where}: runs must be a positive whole number, got {runs!r}")
        out.append(Published(str(e["method"]), str(e["model"]), str(e["dataset"]), float(s), float(acc),
                             float(spread) if spread is not None else stats.NAN, str(e["source"]),
                             bool(e.get("approximate", False)), str(e.get("note", "")),
                             str(e.get("checked", "")), float(e.get("sparsity_tolerance", 0.0005)), runs,
                             bool(e.get("own", False)), metric))
    return out


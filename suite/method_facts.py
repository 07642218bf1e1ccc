"""What the report needs to know of each registered method, without importing torch or a baseline.

The method registry (suite.methods) imports torch and, on use, every baseline; the report only reads JSON
and must not pay for that. A result.json written since `method_kind` was recorded says its method's kind
itself; for older results and the committed exports this table says it. tests/test_method_facts.py checks
that every entry equals the registered class's attributes and settings, so the two cannot drift."""
from __future__ import annotations

from dataclasses import dataclass

from suite.config import DataConfig, ModelConfig, PruneConfig, TrainConfig, WandbConfig, to_dict

DENSE, PRUNES, ABLATION = "dense", "prunes", "ablation"  # a method's kind, as result.json's method_kind says


@dataclass(frozen=True)
class MethodFacts:
    """One registered method as the report sees it: its kind and the config section of its own settings."""
    kind: str                  # dense (prunes = False), ablation (ablates = True), prunes (every other)
    section: str | None = None  # the config section it reads its own settings from (None: it has none)


# in suite.methods.METHODS order (the report colours and orders methods by it)
FACTS: dict[str, MethodFacts] = {
    "progressive": MethodFacts(PRUNES),
    "dense": MethodFacts(DENSE),
    "snip": MethodFacts(PRUNES, "snip"),
    "grasp": MethodFacts(PRUNES, "grasp"),
    "lth": MethodFacts(PRUNES, "lth"),
    "random": MethodFacts(PRUNES),
    "synflow": MethodFacts(PRUNES, "synflow"),
    "rigl": MethodFacts(PRUNES, "rigl"),
    "set": MethodFacts(PRUNES, "set"),
    "gmp": MethodFacts(PRUNES),
    "oneshot": MethodFacts(PRUNES, "oneshot"),
    "shuffle": MethodFacts(ABLATION, "ablate"),
    "reinit": MethodFacts(ABLATION, "ablate"),
    "invert": MethodFacts(ABLATION, "ablate"),
    "ticket": MethodFacts(ABLATION, "ablate"),
    "rewire": MethodFacts(ABLATION, "ablate"),
}

# each method section's defaults (its class's `settings()`), in registry order: the config tree's
# method sections, between prune and wandb
SETTINGS_DEFAULTS: dict[str, dict] = {
    "snip": {"batches": 1, "bn_mode": "eval"},
    "grasp": {"samples_per_class": 10, "temperature": 200.0, "bn_mode": "train"},
    "lth": {"rate": 0.2, "rewind_epoch": 0, "rewind_step": 0},
    "synflow": {"iterations": 100},
    "rigl": {"update_every": 100, "t_end": 0.75, "drop_fraction": 0.3},
    "set": {"drop_fraction": 0.3, "update_every": 0},
    "oneshot": {"dense_epochs": None, "dense_frac": None, "lr": "restart"},
    "ablate": {"source": "", "source_experiment": "", "source_method": "", "source_round": 0},
}

DEFAULT_METHOD = "progressive"  # Config().method
DEFAULT_SEED = 42               # Config().seed


def method_names() -> tuple[str, ...]:
    """Every registered method, in registry order."""
    return tuple(FACTS)


def dense_methods() -> tuple[str, ...]:
    """Registered methods that never prune: the dense controls."""
    return tuple(name for name, f in FACTS.items() if f.kind == DENSE)


def ablation_methods() -> tuple[str, ...]:
    """Registered methods that train another finished run's mask."""
    return tuple(name for name, f in FACTS.items() if f.kind == ABLATION)


def method_sections() -> tuple[str, ...]:
    """Config sections that hold method settings: `prune` (shared) and each method's own."""
    return ("prune", *SETTINGS_DEFAULTS)


def method_kind(name: str) -> str | None:
    """A method's kind (dense, prunes, ablation); None for a name the registry does not hold."""
    facts = FACTS.get(name)
    return facts.kind if facts else None


def default_tree() -> dict:
    """The default config as a plain tree (what `to_dict(suite.experiment.Config())` gives)."""
    return {"method": DEFAULT_METHOD, "seed": DEFAULT_SEED, "data": to_dict(DataConfig()),
            "model": to_dict(ModelConfig()), "train": to_dict(TrainConfig()), "prune": to_dict(PruneConfig()),
            **{section: dict(values) for section, values in SETTINGS_DEFAULTS.items()},
            "wandb": to_dict(WandbConfig())}

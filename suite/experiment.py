"""The experiment: the run's `Config` (the sections of suite.config plus one section per registered
method with settings), loaded from YAML and overrides, resolved, validated, and named by its hash.

It sits above the method registry and imports it at module level; a method module never imports this
one (it may name `Config` under TYPE_CHECKING). A method that must rebuild another run's saved config (an
ablation, its source's) asks the config it was given: `type(cfg).rebuild(tree)` and `cfg.science()` are
this module's `from_dict` and `science_settings` (tests/test_imports.py: no import circle anywhere)."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import re
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

from suite.config import (DataConfig, ModelConfig, PruneConfig, TrainConfig, WandbConfig, build_section,
                          check_choice, has_dotted, merged, read_yaml, rebuilding, saved_config, set_dotted,
                          split_override, type_name, yaml_text, yaml_value)
from suite.errors import ConfigError
from suite.masks import STRUCTURES
from suite.methods import method_class, method_sections, method_settings, reads
from suite.models import INITS, MODEL_INITS
from suite.schedules import SPARSITY_SCHEDULES

# The tree: these sections, then one section per method that has settings (its class's
# `settings` dataclass under the method's name, in registry order: snip, grasp, lth, ...), then wandb.
_HEAD = (("method", str, "progressive"), ("seed", int, 42), ("data", DataConfig, DataConfig()),
         ("model", ModelConfig, ModelConfig()), ("train", TrainConfig, TrainConfig()),
         ("prune", PruneConfig, PruneConfig()))
_TAIL = (("wandb", WandbConfig, WandbConfig()),)


def _config_class(sections: dict[str, type]) -> type:
    """The run's config dataclass: the fixed sections with the methods' settings sections between them."""
    taken = {name for name, *_ in _HEAD + _TAIL} | {"rebuild", "science"}  # the sections and Config's two methods
    for name, cls in sections.items():
        if name in taken:
            raise ImportError(f"method '{name}': its settings section clashes with the config section '{name}'")
        if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):
            raise ImportError(f"method '{name}': settings must be a frozen dataclass, got {cls!r}")
    fields = [(name, tp, field(default=default)) for name, tp, default in _HEAD]
    fields += [(name, cls, field(default=cls())) for name, cls in sections.items()]
    fields += [(name, tp, field(default=default)) for name, tp, default in _TAIL]
    # two methods that name this module's functions, so that a method module given a config can rebuild another
    # run's saved config (an ablation's source) and read its science settings without importing this module
    namespace = {"rebuild": classmethod(lambda cls, tree: from_dict(tree)),
                 "science": lambda self: science_settings(self)}
    cls = dataclasses.make_dataclass("Config", fields, frozen=True, namespace=namespace)
    cls.__module__, cls.__doc__ = __name__, "Every setting of one run: a frozen tree of sections."
    return cls


Config = _config_class(method_settings())


# --- loading -----------------------------------------------------------------------------------

def is_path_key(dotted: str) -> bool:
    """Whether a dotted key names a path setting (`path_field`: data.root, ablate.source, ...)."""
    node: Any = Config()
    *sections, name = dotted.split(".")
    for part in sections:
        node = getattr(node, part, None)
    if not dataclasses.is_dataclass(node):
        return False
    found = {f.name: f for f in dataclasses.fields(node)}.get(name)
    return bool(found and found.metadata.get("path"))


def override_text(key: str, value: Any) -> str:
    """`key=value` that parse_override reads back to `value` (a path verbatim, anything else as YAML)."""
    return f"{key}={value}" if isinstance(value, str) and is_path_key(key) else f"{key}={yaml_text(value)}"


def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=0.01` -> ("train.lr", 0.01); the value is read as YAML, a path setting's verbatim."""
    key, raw = split_override(text)
    return (key, raw) if is_path_key(key) else (key, yaml_value(raw))


def load_config(path: str | Path | None = None, overrides: list[str] = (), method: str | None = None) -> Config:
    """Build the config: defaults < YAML file < `key=value` overrides < --method; then validate."""
    tree: dict = {}
    if path is not None:
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys at the top")
        tree = loaded or {}
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(tree, key, value)
    if method is not None:
        tree["method"] = method
    return _from_tree(tree)


def from_dict(tree: dict) -> Config:
    """Rebuild a config from `to_dict` output (e.g. a run's saved config.json), reading nothing else."""
    with saved_config():
        return _from_tree(copy.deepcopy(tree))


def _from_tree(tree: dict) -> Config:
    """Defaults < the method's own `defaults` < the given tree; then resolve and validate."""
    name = tree.get("method", Config().method)
    if isinstance(name, str):
        if not rebuilding():  # a saved config already holds what its base gave it
            tree = merged(method_class(name).base_config(tree), tree)  # e.g. an ablation's source config
        for key, value in method_class(name).defaults.items():
            if not has_dotted(tree, key):
                set_dotted(tree, key, copy.deepcopy(value))
    return validate(resolve(build_section(Config, tree, "")))


def _reset_unused(cfg: Config, keys: tuple[str, ...]) -> Config:
    """Put method settings the chosen method never reads back to their defaults, so they cannot
    split one experiment into several folders."""
    for section in method_sections():
        current, default = getattr(cfg, section), getattr(Config(), section)
        changes = {
            f.name: getattr(default, f.name)
            for f in dataclasses.fields(current)
            if not any(f"{section}.{f.name}".startswith(k) for k in keys)
        }
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(current, **changes)})
    return cfg


def resolve(cfg: Config) -> Config:
    """Fill derived defaults so the saved config says exactly what ran."""
    method = method_class(cfg.method)
    cfg = _reset_unused(cfg, reads(method))
    if cfg.train.steps:  # the budget is in steps: train.epochs is not read and must not split run folders
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=TrainConfig().epochs))
    if not method.prunes:
        cfg = dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, target_sparsity=0.0))
    if cfg.prune.structure != "nm":  # [N, M] means nothing then: it must not split run folders
        cfg = dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, nm=PruneConfig().nm))
    if any("prune.t_end".startswith(k) for k in reads(method)):
        cfg = dataclasses.replace(cfg, prune=_schedule_points(cfg.prune, cfg.train))
    if cfg.model.init == MODEL_INITS.get(cfg.model.name):  # naming the model's own init is its default experiment
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init="model"))
    return cfg


def _schedule_points(p: PruneConfig, t: TrainConfig) -> PruneConfig:
    """prune.t_start/t_end as the run uses them. Under an epoch budget a fraction becomes epochs
    (`t_end_frac: 0.5` at 40 epochs is `t_end: 20`, one experiment, one hash) and the default end is
    half the epochs (floored as before; 0.5 at one epoch, never 0: the schedule cannot collapse onto
    the initialisation). Under `train.steps` the epochs of the budget are known only with the data,
    so the points stay fractions (the default end: 0.5)."""
    for name in ("t_start", "t_end"):
        frac = getattr(p, f"{name}_frac")
        if frac is not None and not 0 <= frac <= 1:
            raise ConfigError(f"prune.{name}_frac: must be a fraction of the budget in [0, 1], got {frac}")
        if frac is not None and getattr(p, name) != getattr(PruneConfig(), name):
            raise ConfigError(f"prune.{name}_frac: give prune.{name} (epochs) or prune.{name}_frac "
                              f"(a fraction of the budget), not both")
    if t.steps:
        given = [f"prune.{name}" for name in ("t_start", "t_end") if getattr(p, name) != getattr(PruneConfig(), name)]
        if given:
            raise ConfigError(f"{given[0]}: under train.steps give schedule points as fractions of the budget "
                              f"({given[0]}_frac), not in epochs")
        return p if p.t_end_frac is not None else dataclasses.replace(p, t_end_frac=0.5)
    if t.epochs < 1:
        return p  # validate names train.epochs itself
    changes: dict = {}
    for name in ("t_start", "t_end"):
        frac = getattr(p, f"{name}_frac")
        if frac is not None:
            changes.update({name: round(frac * t.epochs, 9) + 0.0, f"{name}_frac": None})
    if p.t_end is None and "t_end" not in changes:
        changes["t_end"] = float(t.epochs // 2) or t.epochs / 2  # the floor keeps past hashes; 1 epoch: 0.5
        t_start = changes.get("t_start", p.t_start)
        if t_start > changes["t_end"]:  # named here, while it is known that the user never set t_end
            raise ConfigError(f"prune.t_start: {t_start:g} is after the schedule's end, epoch {changes['t_end']:g} "
                              f"(prune.t_end unset: half of train.epochs={t.epochs}); set prune.t_end "
                              f"between {t_start:g} and {t.epochs}, or an earlier prune.t_start")
    return dataclasses.replace(p, **changes)


def check_structure(cfg: Config) -> None:
    """prune.structure and prune.nm: a known structure that the method supports, a valid [N, M]
    whose sparsity 1 - N/M is at most the target (exactly it for drop-and-grow methods), and a
    classifier kept whole under channel pruning."""
    p = cfg.prune
    check_choice("prune.structure", p.structure, STRUCTURES)
    supported = method_class(cfg.method).structures
    if p.structure not in supported:
        raise ConfigError(f"prune.structure: method '{cfg.method}' supports only {', '.join(supported)} "
                          f"(got {p.structure}); set prune.structure={supported[0]}")
    if len(p.nm) != 2 or not 1 <= p.nm[0] < p.nm[1]:
        raise ConfigError(f"prune.nm: expected [N, M] with 1 <= N < M, got {list(p.nm)}")
    if p.structure == "nm" and method_class(cfg.method).prunes:
        n, m = p.nm
        pattern = 1 - n / m
        if method_class(cfg.method).regrows and abs(p.target_sparsity - pattern) > 1e-9:
            # drop and grow within each group keeps exactly N alive there: the pattern's own sparsity
            raise ConfigError(f"prune.target_sparsity: {p.target_sparsity:g} is not the sparsity of the {n}:{m} "
                              f"pattern, which method '{cfg.method}' keeps exactly; "
                              f"set prune.target_sparsity={pattern!r} (1 - {n}/{m})")
        if p.target_sparsity < pattern - 1e-9:
            raise ConfigError(f"prune.target_sparsity: {p.target_sparsity:g} is below the {pattern:g} of the {n}:{m} "
                              f"pattern (its mask would keep dense groups); set prune.target_sparsity >= {pattern!r}")
    if p.structure == "channel" and not p.keep_last_dense:
        raise ConfigError("prune.structure: channel pruning removes whole output channels, and the model's output "
                          "reads the last prunable layer's (a classifier's classes, the GPT's residual stream); "
                          "set prune.keep_last_dense=true")


def _check_steps(t: TrainConfig) -> None:
    """The step budget, the optimizer's betas, warm-up, final learning rate and clipping."""
    if t.steps < 0:
        raise ConfigError(f"train.steps: must be non-negative (0 = train.epochs), got {t.steps}")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise ConfigError(f"train.betas: expected [beta1, beta2] each in [0, 1), got {list(t.betas)}")
    if t.warmup_steps < 0:
        raise ConfigError(f"train.warmup_steps: must be non-negative, got {t.warmup_steps}")
    if t.steps and t.warmup_steps >= t.steps:
        raise ConfigError(f"train.warmup_steps: {t.warmup_steps} leaves no step of the {t.steps}-step budget "
                          f"(train.steps) to the cosine; set it below {t.steps}")
    if not 0 <= t.min_lr <= t.lr:
        raise ConfigError(f"train.min_lr: must be in [0, train.lr = {t.lr:g}], got {t.min_lr}")
    if t.grad_clip < 0:
        raise ConfigError(f"train.grad_clip: must be non-negative (0 = off), got {t.grad_clip}")
    unused = [f"train.{k}" for k in ("warmup_steps", "min_lr")
              if getattr(t, k) != getattr(TrainConfig(), k) and t.lr_schedule != "warmup_cosine"]
    if unused:
        raise ConfigError(f"{unused[0]}: is read by train.lr_schedule=warmup_cosine only "
                          f"(train.lr_schedule is {t.lr_schedule})")


def validate(cfg: Config) -> Config:
    """Range checks; each failure is one line naming the key."""
    t, p, d = cfg.train, cfg.prune, cfg.data
    if not 0 <= cfg.seed < 2 ** 63:  # torch and the data streams take a 63-bit seed; the folder is seed_<n>
        raise ConfigError(f"seed: must be in [0, 2**63 - 1], got {cfg.seed}")
    if t.epochs < 1:
        raise ConfigError(f"train.epochs: must be at least 1, got {t.epochs}")
    if t.batch_size < 1:
        raise ConfigError(f"train.batch_size: must be at least 1, got {t.batch_size}")
    if t.processes < 1:
        raise ConfigError(f"train.processes: must be at least 1, got {t.processes}")
    if t.batch_size % t.processes:
        raise ConfigError(f"train.batch_size: {t.batch_size} is not divisible by train.processes {t.processes} "
                          f"(the launcher's process count)")
    if t.lr <= 0:
        raise ConfigError(f"train.lr: must be positive, got {t.lr}")
    if not 0 <= t.momentum < 1:
        raise ConfigError(f"train.momentum: must be in [0, 1), got {t.momentum}")
    if t.weight_decay < 0:
        raise ConfigError(f"train.weight_decay: must be non-negative, got {t.weight_decay}")
    if t.eval_every < 1:
        raise ConfigError(f"train.eval_every: must be at least 1, got {t.eval_every}")
    if any(m < 1 or (m > t.epochs and not t.steps) for m in t.milestones):
        raise ConfigError(f"train.milestones: each must be an epoch in [1, {t.epochs}], got {list(t.milestones)}")
    check_choice("train.optimizer", t.optimizer, ("sgd", "adam", "adamw"))
    check_choice("train.lr_schedule", t.lr_schedule, ("cosine", "step", "constant", "warmup_cosine"))
    _check_steps(t)
    check_choice("train.precision", t.precision, ("fp32", "bf16", "fp16"))
    for key, s in (("prune.target_sparsity", p.target_sparsity), ("prune.initial_sparsity", p.initial_sparsity)):
        if not 0 <= s < 1:
            raise ConfigError(f"{key}: must be in [0, 1), got {s}")
    if p.initial_sparsity > p.target_sparsity:
        raise ConfigError(f"prune.initial_sparsity: {p.initial_sparsity} exceeds prune.target_sparsity {p.target_sparsity}")
    check_choice("prune.schedule", p.schedule, tuple(SPARSITY_SCHEDULES))
    check_choice("prune.distribution", p.distribution, ("global", "uniform", "erk"))
    check_structure(cfg)
    if p.t_start < 0:
        raise ConfigError(f"prune.t_start: must be non-negative, got {p.t_start}")
    if p.t_start_frac is not None and p.t_end_frac is not None and p.t_end_frac < p.t_start_frac:
        raise ConfigError(f"prune.t_end_frac: {p.t_end_frac} is before prune.t_start_frac {p.t_start_frac}")
    if p.t_end is not None and p.t_end > t.epochs:
        raise ConfigError(f"prune.t_end: {p.t_end:g} is beyond the last epoch ({t.epochs}); set prune.t_end=null "
                          f"(half the epochs, which follows train.epochs) or an epoch up to {t.epochs}")
    if p.t_end is not None and p.t_end < p.t_start:
        raise ConfigError(f"prune.t_end: {p.t_end} is before prune.t_start {p.t_start}")
    if p.update_every_steps < 0:
        raise ConfigError(f"prune.update_every_steps: must be non-negative, got {p.update_every_steps}")
    check_choice("data.loader", d.loader, ("device", "torchvision"))
    if not 0 <= d.jitter < 1:
        raise ConfigError(f"data.jitter: must be in [0, 1), got {d.jitter}")
    if d.val_size < 0:
        raise ConfigError(f"data.val_size: must be non-negative, got {d.val_size}")
    if cfg.model.init != "model":
        check_choice("model.init", cfg.model.init, ("model",) + tuple(INITS))
    if d.num_workers < 0:
        raise ConfigError(f"data.num_workers: must be non-negative, got {d.num_workers}")
    if d.context < 1:
        raise ConfigError(f"data.context: must be at least 1, got {d.context}")
    m = cfg.model
    if min(m.n_layer, m.n_head, m.n_embd) < 1:
        raise ConfigError(f"model.n_layer/n_head/n_embd: must be at least 1, got {m.n_layer}/{m.n_head}/{m.n_embd}")
    if m.n_embd % m.n_head:
        raise ConfigError(f"model.n_embd: {m.n_embd} is not divisible by model.n_head={m.n_head}")
    if not 0 <= m.dropout < 1:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {m.dropout}")
    if d.synthetic_train < 1 or d.synthetic_test < 1:
        raise ConfigError("data.synthetic_train/synthetic_test: must be at least 1")
    if len(d.synthetic_shape) not in (1, 3) or min(d.synthetic_shape) < 1:
        raise ConfigError(f"data.synthetic_shape: expected [C, H, W] or [L] of positive sizes, got {list(d.synthetic_shape)}")
    for section in method_settings():
        settings = getattr(cfg, section)
        if hasattr(settings, "validate"):
            settings.validate(cfg)
    check_choice("wandb.mode", cfg.wandb.mode, ("online", "offline", "disabled"))
    return cfg


# --- identity ----------------------------------------------------------------------------------

def _science(obj: Any, default: Any, prefix: str, out: dict) -> None:
    for f in dataclasses.fields(obj):
        if not f.metadata.get("science", True):
            continue
        value, base = getattr(obj, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            _science(value, base, prefix + f.name + ".", out)
        elif value != base:
            out[prefix + f.name] = list(value) if isinstance(value, tuple) else value


def science_settings(cfg: Config) -> dict:
    """Science settings that differ from the defaults, as dotted keys; the seed is left out."""
    out: dict = {}
    _science(cfg, Config(), "", out)
    out.pop("seed", None)
    out["method"] = cfg.method  # always named, so the folder says what ran
    return dict(sorted(out.items()))


def experiment_hash(cfg: Config) -> str:
    """Content address of an experiment: fields at their defaults are left out, so adding a
    field with a default keeps every past name."""
    blob = json.dumps(science_settings(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def with_processes(cfg: Config, launched: int) -> Config:
    """The config of a run launched as `launched` processes: train.processes says so (it is science);
    a config that names another count is one error line."""
    if cfg.train.processes == launched:
        return cfg
    if cfg.train.processes != 1:
        raise ConfigError(f"train.processes: {cfg.train.processes}, but this run was launched as {launched} "
                          f"process{'es' if launched > 1 else ''} (launch with accelerate launch --num_processes "
                          f"{cfg.train.processes}, or leave train.processes out: the launcher sets it)")
    return validate(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, processes=launched)))


def run_dir(cfg: Config, root: str | Path) -> Path:
    """`root/<method>-<model>-<dataset>-s<sparsity>-<hash>/seed_<seed>`."""
    name = f"{cfg.method}-{cfg.model.name}-{cfg.data.name}-s{cfg.prune.target_sparsity:g}-{experiment_hash(cfg)}"
    return Path(root) / name / f"seed_{cfg.seed}"


def _comments(cls: type) -> dict[str, str]:
    """The comment after each field of a dataclass's source (units and meaning), for --help."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (the generated Config class)
        return {}
    found = (re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line) for line in source.splitlines())
    return {m.group(1): m.group(2).strip() for m in found if m}


def help_lines(obj: Any = None, prefix: str = "") -> list[str]:
    """`key (type) = default  # comment` for every config field, for --help."""
    obj = Config() if obj is None else obj
    hints = typing.get_type_hints(type(obj))
    comments = _comments(type(obj))
    lines = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines += help_lines(value, prefix + f.name + ".")
        else:
            shown = list(value) if isinstance(value, tuple) else value
            line = f"  {prefix}{f.name} ({type_name(hints[f.name])}) = {json.dumps(shown)}"
            lines.append(f"{line}  # {comments[f.name]}" if f.name in comments else line)
    return lines

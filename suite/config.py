"""One frozen dataclass tree for a run: YAML files plus `key=value` overrides, validated."""
from __future__ import annotations

import contextvars
import copy
import dataclasses
import hashlib
import inspect
import re
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from suite.errors import ConfigError  # noqa: F401  re-exported: the registry raises it without importing config
from suite.schedules import SPARSITY_SCHEDULES

SEEDS = (42, 123, 456, 789, 999)  # the default seed list of every study


def _plain(default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A field that does not change the science (excluded from the run hash)."""
    return field(default=default, metadata={"science": False}, **kw)


def path_field(default: str = "") -> Any:
    """A path setting (not in the run hash): a `key=value` override gives it verbatim, never read as
    YAML, so a path holding " #" or ": " stays that path."""
    return field(default=default, metadata={"science": False, "path": True})


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist1d"         # synthetic | mnist1d | mnist | cifar10 | cifar10_subset
    val_size: int = 0             # training examples held out for validation (a fixed seeded draw, the same for every method and seed; text: characters off the end of the training text); 0 = none
    root: str = path_field("data")  # folder holding dataset files, e.g. ../shared/data
    download: bool = _plain(False)  # let torchvision fetch missing files (needs internet)
    loader: str = _plain("device")  # device: whole set on the training device | torchvision: DataLoader
    augment: bool = True          # the research's augmentation where the dataset has one (CIFAR)
    jitter: float = 0.2           # colour jitter strength (brightness = contrast = saturation); 0 = crop + flip only
    num_workers: int = _plain(0)  # DataLoader workers (torchvision loader only)
    cache_dir: str = path_field("")  # where .gz files are unpacked; "" = ~/.cache/progressive-pruning
    synthetic_train: int = 512    # synthetic dataset: training images; synthetic_text: characters of the whole text
    synthetic_test: int = 256     # synthetic dataset: test images
    synthetic_shape: tuple[int, ...] = (3, 8, 8)  # synthetic dataset: C, H, W
    context: int = 64             # text datasets: characters per window (the model's context); an epoch is floor(train characters / context) windows


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lenet300"  # lenet300 | resnet18 | vgg_like | vgg19 | tiny_mlp | tiny_cnn | gpt_char
    init: str = "model"     # model: the init of the code each model follows (suite.models.MODEL_INITS) | pytorch | kaiming_normal | torchvision_resnet | snip_variance_scaling | grasp | gpt2
    n_layer: int = 4        # gpt_char: decoder blocks (nanoGPT's CPU recipe: 4)
    n_head: int = 4         # gpt_char: attention heads per block; n_embd must divide by it
    n_embd: int = 128       # gpt_char: width of the residual stream (the MLP is 4x)
    dropout: float = 0.0    # gpt_char: dropout after the embeddings, attention and MLP (0: none, nanoGPT's CPU recipe)
    bias: bool = False      # gpt_char: biases in the Linear and LayerNorm layers (nanoGPT's shakespeare_char: false)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    steps: int = 0                # optimizer steps per training cycle (round), used instead of epochs; 0 = train.epochs
    batch_size: int = 128         # global batch over all processes (per-process = batch / world)
    optimizer: str = "sgd"        # sgd | adam | adamw (decoupled weight decay on tensors of 2+ dims only)
    lr: float = 0.1               # never rescaled with the world size
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, ...] = (0.9, 0.999)  # adam and adamw: decay rates of the two moments
    lr_schedule: str = "cosine"   # cosine | step | constant, stepped once per epoch | warmup_cosine, stepped every optimizer step
    milestones: tuple[int, ...] = ()  # epochs where the step schedule multiplies lr by gamma
    gamma: float = 0.1
    warmup_steps: int = 0         # warmup_cosine: optimizer steps of linear warm-up to train.lr
    min_lr: float = 0.0           # warmup_cosine: the learning rate the cosine ends at
    grad_clip: float = 0.0        # clip the global gradient norm (of the masked gradients) to this; 0 = off
    precision: str = "fp32"       # fp32 | bf16 | fp16 (Accelerate mixed precision)
    channels_last: bool = _plain(False)
    compile: bool = _plain(False)  # torch.compile the model
    eval_every: int = _plain(1)   # evaluate every k epochs (the last epoch always)
    # DDP processes (the world size), set from the launcher: each rank's BatchNorm statistics and
    # augmentation stream see batch / processes examples, so a 2-process run is its own experiment
    processes: int = 1


@dataclass(frozen=True)
class PruneConfig:
    target_sparsity: float = 0.9  # fraction of prunable weights that are zero at the end
    schedule: str = "linear"      # linear | cubic (Zhu & Gupta 2017) | exponential (constant rate), progressive only
    initial_sparsity: float = 0.0  # s_initial of the schedule
    t_start: float = 0.0          # epoch where the schedule starts
    t_end: float | None = None    # epoch where it reaches the target; None = half the budget
    t_start_frac: float | None = None  # t_start as a fraction of the budget (instead of t_start)
    t_end_frac: float | None = None    # t_end as a fraction of the budget (instead of t_end), e.g. 0.5
    update_every_steps: int = 0   # 0: update the mask at each epoch end; N: every N optimizer steps
    keep_first_dense: bool = False  # leave the first prunable layer dense
    keep_last_dense: bool = False   # leave the last prunable layer (the classifier) dense
    distribution: str = "global"  # global: one threshold over all layers | uniform: each layer at the target | erk
    structure: str = "unstructured"  # unstructured | nm: N of every M consecutive inputs of a row live | channel: whole output neurons/filters
    nm: tuple[int, ...] = (2, 4)  # [N, M] of structure nm; the target must then be at least 1 - N/M
    include: tuple[str, ...] = ()  # groups a model keeps dense by default to prune as well; gpt_char: embeddings, head


@dataclass(frozen=True)
class WandbConfig:
    project: str = _plain("progressive-pruning")
    entity: str = _plain("")
    mode: str = _plain("offline")  # online | offline | disabled; WANDB_MODE overrides
    log_mask: bool = _plain(False)  # upload the final mask as an artifact


# The tree: these sections, then one section per method that has settings (its class's
# `settings` dataclass under the method's name, in registry order: snip, grasp, lth, ...), then wandb.
_HEAD = (("method", str, "progressive"), ("seed", int, 42), ("data", DataConfig, DataConfig()),
         ("model", ModelConfig, ModelConfig()), ("train", TrainConfig, TrainConfig()),
         ("prune", PruneConfig, PruneConfig()))
_TAIL = (("wandb", WandbConfig, WandbConfig()),)
_CONFIG: type | None = None
_BUILDING = False


def config_class() -> type:
    """The run's config dataclass, built once from the method registry (`suite.config.Config`)."""
    global _CONFIG, _BUILDING
    if _CONFIG is None:
        if _BUILDING:
            raise ImportError("suite.config.Config was used while the method registry was being imported: "
                              "a method module may import Config only under TYPE_CHECKING")
        _BUILDING = True
        try:
            from suite.methods import method_settings
            sections = method_settings()
        finally:
            _BUILDING = False
        taken = {name for name, *_ in _HEAD + _TAIL}
        for name, cls in sections.items():
            if name in taken:
                raise ImportError(f"method '{name}': its settings section clashes with the config section '{name}'")
            if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):
                raise ImportError(f"method '{name}': settings must be a frozen dataclass, got {cls!r}")
        fields = [(name, tp, field(default=default)) for name, tp, default in _HEAD]
        fields += [(name, cls, field(default=cls())) for name, cls in sections.items()]
        fields += [(name, tp, field(default=default)) for name, tp, default in _TAIL]
        cls = dataclasses.make_dataclass("Config", fields, frozen=True)
        cls.__module__, cls.__doc__ = __name__, "Every setting of one run: a frozen tree of sections."
        _CONFIG = cls
    return _CONFIG


def __getattr__(name: str) -> Any:
    if name == "Config":  # built on first use: the registry's methods import this module
        return config_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- loading -----------------------------------------------------------------------------------

def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Coerce a YAML value to a field type, or raise naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(tp)
        if item is int and isinstance(value, str) and re.fullmatch(r"\d+(:\d+)+", value.strip()):
            value = [int(v) for v in value.split(":")]  # `2:4`, as N:M patterns are written
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {item.__name__}, got {value!r}")
        return tuple(_check_type(v, item, key) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        except ValueError:
            pass
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected int, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp is float:
        return value + 0.0  # -0.0 is 0.0: one folder, one hash
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(cls: type, values: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}' (valid: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        tp, value, key = hints[f.name], values[f.name], prefix + f.name
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a section of keys, got {value!r}")
            kwargs[f.name] = _build(tp, value, key + ".")
        else:
            kwargs[f.name] = _check_type(value, tp, key)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def is_path_key(dotted: str) -> bool:
    """Whether a dotted key names a path setting (`path_field`: data.root, ablate.source, ...)."""
    node: Any = config_class()()
    *sections, name = dotted.split(".")
    for part in sections:
        node = getattr(node, part, None)
    if not dataclasses.is_dataclass(node):
        return False
    found = {f.name: f for f in dataclasses.fields(node)}.get(name)
    return bool(found and found.metadata.get("path"))


def yaml_text(value: Any) -> str:
    """A value as one line of YAML that reads back to it: 1e30 -> 1.0e+30, 'yes' -> "'yes'"."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text[:-len("\n...")] if text.endswith("\n...") else text  # drop YAML's end-of-document mark


def override_text(key: str, value: Any) -> str:
    """`key=value` that parse_override reads back to `value` (a path verbatim, anything else as YAML)."""
    return f"{key}={value}" if isinstance(value, str) and is_path_key(key) else f"{key}={yaml_text(value)}"


def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=0.01` -> ("train.lr", 0.01); the value is read as YAML, a path setting's verbatim."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    if is_path_key(key.strip()):
        return key.strip(), raw
    try:
        value = load_yaml_text(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges a mapping (the keys written beside it win); not a duplicate
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: let PyYAML say so
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' on line {key_node.start_mark.line + 1} "
                    f"(first on line {first})", key_node.start_mark)
        return super().construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)

# YAML 1.1 reads `2:4` as the base-60 integer 124 (and `1:30.5` as 90.5): a pattern like prune.nm=2:4 would
# silently become a number. Here such text stays a string, and a field that takes it says what it means.
_BASE_60 = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _BASE_60]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X), list("-+0123456789"))
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def load_yaml_text(text: str) -> Any:
    """YAML text as the config reads it: a key given twice is an error, `2:4` is text, not 124."""
    return yaml.load(text, Loader=_StrictLoader)


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML file's content; a missing, empty, binary or bad YAML file, or a key given twice at any
    depth, is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}" if not path.exists() else f"{what} {path}: not a file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot be read ({e.strerror})") from None
    if b"\0" in raw:
        raise ConfigError(f"{path}: a binary file, not a YAML {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}), not a YAML {what}") from None
    try:
        tree = load_yaml_text(text)
    except yaml.MarkedYAMLError as e:
        where = f" (line {e.problem_mark.line + 1})" if e.problem_mark is not None and "line" not in \
            str(e.problem) else ""
        raise ConfigError(f"{path}: not valid YAML: {e.problem}{where}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if tree is None:
        raise ConfigError(f"{path}: the {what} is empty (leave --config out for the defaults)"
                          if what == "config file" else f"{path}: the {what} is empty")
    return tree


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
        _set_dotted(tree, key, value)
    if method is not None:
        tree["method"] = method
    return _from_tree(tree)


_REBUILDING: contextvars.ContextVar[bool] = contextvars.ContextVar("rebuilding", default=False)


def rebuilding() -> bool:
    """Whether the config being validated is a saved one (`from_dict`): what ran, complete, checked when
    it ran; a settings check that reads other folders (an ablation's source, which may have moved since)
    leaves it alone."""
    return _REBUILDING.get()


def from_dict(tree: dict) -> Config:
    """Rebuild a config from `to_dict` output (e.g. a run's saved config.json), reading nothing else."""
    token = _REBUILDING.set(True)
    try:
        return _from_tree(copy.deepcopy(tree))
    finally:
        _REBUILDING.reset(token)


def dotted_value(tree: dict, dotted: str) -> Any:
    """The value at a dotted key of a config tree (`to_dict`, config.json); KeyError if absent."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _has_dotted(tree: dict, dotted: str) -> bool:
    try:
        dotted_value(tree, dotted)
    except KeyError:
        return False
    return True


def _from_tree(tree: dict) -> Config:
    """Defaults < the method's own `defaults` < the given tree; then resolve and validate."""
    from suite.methods import method_class  # late: the registry imports the baselines

    name = tree.get("method", config_class()().method)
    if isinstance(name, str):
        if not rebuilding():  # a saved config already holds what its base gave it
            tree = _merged(method_class(name).base_config(tree), tree)  # e.g. an ablation's source config
        for key, value in method_class(name).defaults.items():
            if not _has_dotted(tree, key):
                _set_dotted(tree, key, copy.deepcopy(value))
    return validate(resolve(_build(config_class(), tree, "")))


def _merged(base: dict, over: dict) -> dict:
    """`base` with `over` on top, section by section (over wins)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _reset_unused(cfg: Config, keys: tuple[str, ...]) -> Config:
    """Put method settings the chosen method never reads back to their defaults, so they cannot
    split one experiment into several folders."""
    from suite.methods import method_sections

    for section in method_sections():
        current, default = getattr(cfg, section), getattr(config_class()(), section)
        changes = {
            f.name: getattr(default, f.name)
            for f in dataclasses.fields(current)
            if not any(f"{section}.{f.name}".startswith(k) for k in keys)
        }
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(current, **changes)})
    return cfg


def resolve(cfg: Config) -> Config:
    """Fill derived defaults so the saved config says exactly what ran."""
    from suite.methods import method_class, reads  # late: the registry imports the baselines

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
    from suite.models import MODEL_INITS
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


def check_choice(key: str, value: str, options: tuple[str, ...]) -> None:
    """One ConfigError line when `value` is not one of `options` (for settings' `validate`)."""
    if value not in options:
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(options)}")


def check_structure(cfg: Config) -> None:
    """prune.structure and prune.nm: a known structure that the method supports, a valid [N, M]
    whose sparsity 1 - N/M is at most the target (exactly it for drop-and-grow methods), and a
    classifier kept whole under channel pruning."""
    from suite.masks import STRUCTURES
    from suite.methods import method_class

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
        raise ConfigError("prune.structure: channel pruning of the last layer would remove classes; "
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
    from suite.models import INITS

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
    from suite.methods import method_settings

    for section in method_settings():
        settings = getattr(cfg, section)
        if hasattr(settings, "validate"):
            settings.validate(cfg)
    check_choice("wandb.mode", cfg.wandb.mode, ("online", "offline", "disabled"))
    return cfg


# --- identity ----------------------------------------------------------------------------------

def to_dict(cfg: Any) -> dict:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


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
    _science(cfg, config_class()(), "", out)
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
    obj = config_class()() if obj is None else obj
    hints = typing.get_type_hints(type(obj))
    comments = _comments(type(obj))
    lines = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines += help_lines(value, prefix + f.name + ".")
        else:
            shown = list(value) if isinstance(value, tuple) else value
            line = f"  {prefix}{f.name} ({_type_name(hints[f.name])}) = {json.dumps(shown)}"
            lines.append(f"{line}  # {comments[f.name]}" if f.name in comments else line)
    return lines

"""The sections of a run's config and how they are read: strict YAML, `key=value` overrides, typed
coercion and dotted keys. A leaf: it knows no method (the assembled experiment is suite.experiment)."""
from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from suite.errors import ConfigError

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


# --- reading ------------------------------------------------------------------------------------

def check_type(value: Any, tp: Any, key: str) -> Any:
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
                return check_type(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(tp)
        if item is int and isinstance(value, str) and re.fullmatch(r"\d+(:\d+)+", value.strip()):
            value = [int(v) for v in value.split(":")]  # `2:4`, as N:M patterns are written
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {item.__name__}, got {value!r}")
        return tuple(check_type(v, item, key) for v in value)
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
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r}")
    if tp is float:
        return value + 0.0  # -0.0 is 0.0: one folder, one hash
    return value


def type_name(tp: Any) -> str:
    """A field type as --help and errors show it: `int`, `float | None`, `tuple[int, ...]`."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def build_section(cls: type, values: dict, prefix: str) -> Any:
    """An instance of the dataclass `cls` from a tree of values (its nested sections too), each coerced to
    its field's type; an unknown key or a wrong type is one ConfigError line naming the dotted key."""
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
            kwargs[f.name] = build_section(tp, value, key + ".")
        else:
            kwargs[f.name] = check_type(value, tp, key)
    return cls(**kwargs)


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set `tree[a][b][c] = value` for `a.b.c`, creating sections; a non-section on the way is a ConfigError."""
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def yaml_text(value: Any) -> str:
    """A value as one line of YAML that reads back to it: 1e30 -> 1.0e+30, 'yes' -> "'yes'"."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text[:-len("\n...")] if text.endswith("\n...") else text  # drop YAML's end-of-document mark


def split_override(text: str) -> tuple[str, str]:
    """`train.lr=0.01` -> ("train.lr", "0.01"): the key and the raw text of its value."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    return key.strip(), raw


def yaml_value(raw: str) -> Any:
    """An override's value read as YAML (text that is not YAML stays text)."""
    try:
        return load_yaml_text(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


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


def dotted_value(tree: dict, dotted: str) -> Any:
    """The value at a dotted key of a config tree (`to_dict`, config.json); KeyError if absent."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def has_dotted(tree: dict, dotted: str) -> bool:
    """Whether a config tree sets the dotted key."""
    try:
        dotted_value(tree, dotted)
    except KeyError:
        return False
    return True


def merged(base: dict, over: dict) -> dict:
    """`base` with `over` on top, section by section (over wins)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_REBUILDING: contextvars.ContextVar[bool] = contextvars.ContextVar("rebuilding", default=False)


@contextlib.contextmanager
def saved_config() -> Iterator[None]:
    """While a saved config (suite.experiment.from_dict) is rebuilt: see `rebuilding`."""
    token = _REBUILDING.set(True)
    try:
        yield
    finally:
        _REBUILDING.reset(token)


def rebuilding() -> bool:
    """Whether the config being validated is a saved one (`from_dict`): what ran, complete, checked when
    it ran; a settings check that reads other folders (an ablation's source, which may have moved since)
    leaves it alone."""
    return _REBUILDING.get()


def check_choice(key: str, value: str, options: tuple[str, ...]) -> None:
    """One ConfigError line when `value` is not one of `options` (for settings' `validate`)."""
    if value not in options:
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(options)}")


def to_dict(cfg: Any) -> dict:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))

"""What a pruning method is (it only decides which weights live), and the registry of methods.

A method is one file and one line in `METHODS`: its class declares its own settings (a frozen
dataclass, the config section named after the method), its defaults for shared keys, whether its
masks may regrow, and the hooks it implements. The config tree, validation, --help, the run hash,
the report and the sweep learn about methods from this registry only."""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from suite.errors import ConfigError
from suite.masks import STRUCTURES, Mask, Scores
from suite.method_facts import ABLATION, DENSE, PRUNES
from suite.schedules import Budget, budget as budget_of

if TYPE_CHECKING:  # suite.experiment builds Config from this registry: a method never imports it at run time
    from suite.experiment import Config


@dataclass
class Context:
    """What a method may look at when it decides: never the optimizer, the loop or the disk."""
    cfg: Config
    model: nn.Module                      # the unwrapped model (DDP cannot double-backward)
    weights: dict[str, nn.Parameter]      # the prunable weights of `model`, in layer order
    data: Any                             # suite.data.Data: scoring_batches(n), class_balanced(k), ...
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    device: torch.device
    epochs: int                           # epochs per round (a partial last one under train.steps included)
    steps_per_epoch: int
    budget: Budget | None = None          # the round's optimizer steps; budget.epochs its length in epochs
    rank: int = 0
    world_size: int = 1

    def all_reduce_sum(self, tensors: list[Tensor]) -> None:
        """Sum tensors over ranks in place (a no-op in one process): scores see the union of data."""
        if self.world_size > 1 and dist.is_initialized():
            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)


@dataclass(frozen=True)
class Prune:
    """A hook's request to prune by the method's own `scores`: the shared selection
    (suite.selection.select) turns them into the mask at `sparsity` under prune.distribution and
    prune.structure, never reviving a weight, and does nothing when the mask already has that many
    zeros (so trained weights are never scored after a resume). `steps`: sparsities to prune to
    first, one after another, re-scoring under the mask so far before each (SynFlow's schedule)."""
    sparsity: float
    steps: tuple[float, ...] = ()


class PruningMethod:
    """A method answers at the points it cares about (its hooks: when it prunes) with `Prune(s)` (prune
    to sparsity s by its `scores`: what it ranks), a new mask of its own (the drop-and-grow updates,
    the ablations), or None for no change. It never edits the mask it was given, and keeps no state
    the runner does not checkpoint (the mask, the round and the epoch are the whole state: derive any
    randomness from (seed, round, epoch)).

    The mask contract, for every hook: `mask` is the mask in force (name -> bool tensor, True =
    alive, i.e. the weight takes part in the forward pass and is updated; a dead weight is exactly 0
    with zero optimizer state). The returned mask has the same keys, shapes and dtype bool, and it is
    the same on every rank (the runner checks). With `regrows = False` it must be a subset of `mask`
    (the runner stops with RunFailed if a weight revives); with `regrows = True` any weight may come
    back. At every position whose mask changed, in either direction, the runner sets the weight and
    its optimizer state (momentum, Adam moments) to exactly 0: a revived weight starts from zero."""

    name: ClassVar[str] = ""
    # config prefixes it reads besides its own section, e.g. ("prune.target_sparsity", "prune.keep_");
    # every other method setting is reset to its default so that it cannot split run folders
    config_keys: ClassVar[tuple[str, ...]] = ()
    prunes: ClassVar[bool] = True                # False: the dense control (target sparsity 0)
    # a frozen dataclass of the method's own settings: the config section `<name>.` (each field with
    # a default and a comment giving units, shown by --help); it may define `validate(self, cfg)`
    # raising ConfigError with one line that names the key
    settings: ClassVar[type | None] = None
    # defaults for shared keys, dotted, e.g. {"prune.distribution": "erk"}: applied below the YAML
    # file and the overrides. They enter the run hash like any value that differs from the global
    # default (so changing one renames the method's folders, as a change of science should)
    defaults: ClassVar[dict[str, object]] = {}
    regrows: ClassVar[bool] = False   # True: a new mask may revive dead weights (RigL, SET)
    # the values of prune.structure the method supports: a method that prunes by `scores` (its hooks
    # return Prune) gets every structure from the shared selection (suite.selection.select)
    structures: ClassVar[tuple[str, ...]] = STRUCTURES
    # True: `after_backward` reads the gradients of dead weights. They are computed anyway (the
    # backward is dense); the FLOPs accounting counts the weight-gradient of those steps as dense
    dense_grads: ClassVar[bool] = False
    # True: the method trains the mask of another finished run (`ablate.source`), not one it finds
    ablates: ClassVar[bool] = False

    def __init__(self, cfg: Config, budget: Budget | None = None):
        self.cfg = cfg
        # the round's steps (the runner passes the data's); without it, the epochs of train.epochs, at
        # one step per epoch: enough for what is decided before the data exists (rounds, rewinding or not)
        self.budget = budget if budget is not None else budget_of(cfg.train, 1)

    @classmethod
    def base_config(cls, tree: dict) -> dict:
        """Config values that lie below the YAML file and the overrides (above the defaults), read from
        somewhere else: an ablation takes its source run's config. `tree` is what the file and the
        overrides set; {} for most methods."""
        return {}

    def init_seed(self) -> int:
        """The seed of the model's initialisation (torch.manual_seed before the model is built): the
        run's seed, except for a method that asks for an initialisation of its own (reinit)."""
        return self.cfg.seed

    def scores(self, ctx: Context, mask: Mask) -> Scores:
        """The method's score of every prunable weight of `ctx.weights` under `mask` (higher = kept
        first): what the shared selection ranks whenever a hook returns `Prune`."""
        raise NotImplementedError(f"method '{self.name}' returns Prune but defines no scores")

    def init_scores(self, ctx: Context) -> Scores | None:
        """The method's score of every prunable weight at initialisation (higher = kept first), for
        methods that prune by such a score (SNIP, GraSP, SynFlow); None for every other method. An
        `invert` ablation keeps the lowest of these."""
        return None

    def rounds(self) -> int:
        """Training cycles: 1 for one-shot and progressive methods, levels + 1 for LTH."""
        return 1

    def rewind_step(self) -> int:
        """Between rounds the runner rewinds the weights to their values after this many optimizer
        steps of round 0 (0 = the initialisation), and later rounds train from that step on."""
        return 0

    def step_interval(self) -> int:
        """Call `after_backward` and `after_step` every this many optimizer steps (0: never), counted
        over the round's epochs: at global steps g = epoch * steps_per_epoch + step (step 1-based)
        with g % interval == 0."""
        return 0

    def lr_at(self, round_index: int, step: int) -> tuple[int, int]:
        """(step within the learning-rate schedule, the schedule's length in steps) for optimizer step
        `step` (0-based) of a round: by default the one schedule over the round's budget."""
        return step, self.budget.steps

    def check_budget(self) -> None:
        """Raise ConfigError (one line naming the key) when the method's schedule points do not fit
        `self.budget`, known once the data is (e.g. a schedule with no update point before its end)."""

    def target_at(self, round_index: int, t_epochs: float) -> float:
        """The sparsity this method aims for at time t (in epochs) of a round, for the log."""
        return self.cfg.prune.target_sparsity

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Mask | Prune | None:
        """Before the round's first epoch (pruning at init scores here)."""
        return None

    def after_backward(self, round_index: int, t_epochs: float, ctx: Context, mask: Mask,
                       grads: dict[str, Tensor]) -> Mask | None:
        """At a hook step, between `backward` and the gradient masking: `grads` are the dense
        gradients of the prunable weights (dead ones included), already averaged over ranks by DDP
        (under fp16 they carry the loss scale, a positive factor). They are the live `.grad`
        tensors: read them during the call, never keep or edit them. `ctx.weights` hold the weights
        before this step's update. The step itself still runs under `mask`; a returned mask is
        installed right after it (so grown weights start at exactly 0 with zero state, and dropped
        ones are zeroed with theirs). `t_epochs` = epoch + step / steps_per_epoch."""
        return None

    def after_step(self, round_index: int, t_epochs: float, ctx: Context, mask: Mask) -> Mask | Prune | None:
        """At a hook step, after the optimizer step (and after `after_backward`'s mask, if any)."""
        return None

    def end_epoch(self, round_index: int, epoch: int, ctx: Context, mask: Mask) -> Mask | Prune | None:
        """After epoch `epoch` (1-based) of the round, before evaluation and the checkpoint."""
        return None

    def end_round(self, round_index: int, ctx: Context, mask: Mask) -> Mask | Prune | None:
        """After the round's last epoch; the runner then rewinds the weights for the next round."""
        return None


class SourceError(ConfigError):
    """An ablation's source cannot be used: missing, unfinished, or of a kind the ablation does not
    apply to (one line naming it; exit 2)."""


class Dense(PruningMethod):
    """No pruning: the reference every table needs."""
    name = "dense"
    prunes = False


# name -> "module:Class", imported on first use so that a broken baseline cannot break the others
METHODS: dict[str, str] = {
    "progressive": "suite.progressive:Progressive",
    "dense": "suite.methods:Dense",
    "snip": "baselines.snip:Snip",
    "grasp": "baselines.grasp:Grasp",
    "lth": "baselines.lth:LotteryTicket",
    "random": "baselines.random:RandomPruning",
    "synflow": "baselines.synflow:SynFlow",
    "rigl": "baselines.rigl:RigL",
    "set": "baselines.set:SparseEvolutionary",
    "gmp": "baselines.gmp:GradualMagnitude",
    "oneshot": "baselines.oneshot:OneShot",
    "shuffle": "baselines.ablation:Shuffle",
    "reinit": "baselines.ablation:Reinit",
    "invert": "baselines.ablation:Invert",
    "ticket": "baselines.ablation:Ticket",
    "rewire": "baselines.ablation:Rewire",
}


def method_class(name: str) -> type[PruningMethod]:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}' (valid: {', '.join(sorted(METHODS))})")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_method(cfg: Config, budget: Budget | None = None) -> PruningMethod:
    return method_class(cfg.method)(cfg, budget)


def budgeted_method(cfg: Config, steps_per_epoch: int) -> PruningMethod:
    """The method on its round's budget, checked: the warm-up leaves steps to the cosine and the method's
    schedule points fit (ConfigError naming the key). The runner and the preflight (before any folder)
    both call it, once the steps of an epoch are known."""
    budget = budget_of(cfg.train, steps_per_epoch)
    if cfg.train.lr_schedule == "warmup_cosine" and cfg.train.warmup_steps >= budget.steps:
        raise ConfigError(f"train.warmup_steps: {cfg.train.warmup_steps} leaves no step of the "
                          f"{budget.steps}-step round to the cosine; set it below {budget.steps}")
    method = build_method(cfg, budget)
    method.check_budget()
    return method


def settings_section(cls: type[PruningMethod]) -> str | None:
    """The config section a method reads its own settings from: the name of the class that
    declares `settings` (a subclass that inherits them reads its parent's section)."""
    for klass in cls.__mro__:
        if "settings" in vars(klass):
            return klass.name if klass.settings is not None else None
    return None


@functools.cache
def method_settings() -> dict[str, type]:
    """Section name -> settings dataclass, for every registered method that has settings, in
    registry order: the method sections of the config tree."""
    out: dict[str, type] = {}
    for name in METHODS:
        cls = method_class(name)
        section = settings_section(cls)
        if section is not None:
            out.setdefault(section, cls.settings)
    return out


def method_sections() -> tuple[str, ...]:
    """Config sections that hold method settings: `prune` (shared) and each method's own."""
    return ("prune", *method_settings())


def reads(cls: type[PruningMethod]) -> tuple[str, ...]:
    """Every config prefix the method reads: its `config_keys` and its own section."""
    section = settings_section(cls)
    # every method that prunes has its scores turned into a mask under prune.structure (the shared
    # selection), over the model's prunable set (prune.include)
    structure = ("prune.structure", "prune.nm", "prune.include") if cls.prunes else ()
    return cls.config_keys + structure + ((f"{section}.",) if section else ())


def dense_methods() -> tuple[str, ...]:
    """Registered methods that never prune (`prunes = False`): the dense controls."""
    return tuple(name for name in METHODS if not method_class(name).prunes)


def method_kind(cls: type[PruningMethod]) -> str:
    """What the report needs of a method's class, recorded in result.json: dense, ablation or prunes."""
    return DENSE if not cls.prunes else ABLATION if cls.ablates else PRUNES


def ablation_methods() -> tuple[str, ...]:
    """Registered methods that train another finished run's mask (`ablates = True`)."""
    return tuple(name for name in METHODS if method_class(name).ablates)

"""Sanity ablations of a finished pruned result: is it the mask, the weights, or only the layer densities?

Each kind trains the mask of another finished run (`ablate.source`: its seed folder, or an LTH chain's
`round_<r>/` folder) for one cycle, under the source's own settings (model, data, seed, budget):

- `shuffle`: the source's mask permuted uniformly at random within each layer (the same per-layer
  counts: Su et al.'s "random ticket" at the source's layer densities), trained from the source's
  initialisation (for LTH, its rewinding point at epoch 0);
- `reinit`: the source's mask, trained from a fresh initialisation (a seed stream of its own: Frankle
  & Carbin's random re-initialisation control);
- `invert`: for a source whose method scores weights at initialisation (`init_scores`: SNIP, GraSP,
  SynFlow), the mask keeping the lowest scores at the source's per-layer counts, trained from the
  source's initialisation (Frankle et al., ICLR 2021);
- `ticket`: the source's final mask, trained sparse from the source's own initialisation (for LTH, its
  rewinding point at epoch 0): Frankle & Carbin's winning-ticket test. For a dense-to-sparse source
  (progressive, GMP, one-shot, LTH) the clean contrasts are between sparse-from-the-start trainings:
  ticket - reinit (the init matters with this mask), ticket - shuffle and reinit - shuffle;
- `rewire`: a degree-preserving shuffle (Maslov & Sneppen's edge swaps): every neuron keeps its fan-in
  and fan-out (each row's and each column's live count of the source's mask, exactly), only which
  neurons connect changes; trained from the source's initialisation.

The three share one file because they share everything but the mask they derive (and `reinit` its
init seed): reading and checking the source, the settings section `ablate` (declared once, by the
parent class), and the rules for which overrides are allowed. Each is still one registry line.

The source fixes the model, the data, the seed, the prunable set and the sparsity: an override that
changes any of them is one error line. The source's experiment hash, method and round enter this
run's hash (its path does not: moving a runs folder renames nothing), and the run's seed is the
source's, so the ablation of seed s lands in `seed_<s>` beside its source's seeds, paired.

Not yet: sources that rewind to a point after the init (LTH with `lth.rewind_epoch` or `lth.rewind_step`
> 0) keep their rewinding weights in `rewind.safetensors`, but an ablation still starts from a seed's
init, so `shuffle` and `invert` refuse them (one line); `reinit` applies. Under a structured source (`prune.structure`)
`shuffle` permutes whole units (N:M groups, channels), so the random ticket keeps the pattern;
`invert` still ranks single weights at the per-layer counts.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from suite.config import path_field
from suite.errors import ConfigError
from suite.masks import Mask, keep_top, nm_layers, rows_of
from suite.methods import Context, PruningMethod, SourceError
from suite.results import InvalidResult, RunFolder, tensor_shapes

if TYPE_CHECKING:
    from suite.experiment import Config

FROM_SOURCE = ("seed", "prune.target_sparsity", "prune.keep_first_dense", "prune.keep_last_dense",
               "prune.structure", "prune.nm", "ablate.source_experiment", "ablate.source_method",
               "ablate.source_round")


@dataclass(frozen=True)
class AblateConfig:
    source: str = path_field()  # the finished result to ablate: its seed folder, or an LTH round_<r> folder
    source_experiment: str = ""   # set from the source: its experiment hash (part of this run's hash)
    source_method: str = ""       # set from the source: its method
    source_round: int = 0         # set from the source: the round its mask comes from (LTH; else 0)

    def validate(self, cfg: Config) -> None:
        from suite.methods import method_class
        kind = method_class(cfg.method)
        if not kind.ablates:
            return
        if not self.source:
            raise ConfigError(f"ablate.source: {cfg.method} needs a finished result to ablate: its seed folder "
                              f"(runs/<experiment>/seed_<s>) or an LTH round folder (.../seed_<s>/round_<r>)")
        from suite.config import rebuilding
        if rebuilding():
            return  # a saved config: its source was checked when it ran, and may have moved since
        source = read_source(self.source, type(cfg).rebuild)
        check_fixed(cfg, source)
        kind.check_source(source)


@dataclass(frozen=True)
class Source:
    """A finished result to ablate, as its run folder has it."""
    path: Path
    result: dict    # its result.json (a round folder's for an LTH round)
    rebuild: Callable[[dict], Config]  # a saved config tree into a Config: the ablation's own Config.rebuild

    @property
    def config(self) -> dict:
        return self.result["config"]

    def cfg(self) -> Config:
        return self.rebuild(self.config)

    def method(self) -> PruningMethod:
        """The source's method, at the source's settings (what it scored and how it initialised)."""
        from suite.methods import build_method
        return build_method(self.cfg())

    def fixed(self) -> dict[str, Any]:
        return fixed_by(self.result)


def fixed_by(r: dict) -> dict[str, Any]:
    """The values a finished result (its result.json) fixes for an ablation of it."""
    prune = r["config"]["prune"]
    return {"seed": r["seed"], "prune.target_sparsity": r["target_sparsity"],
            "prune.keep_first_dense": prune.get("keep_first_dense", False),
            "prune.keep_last_dense": prune.get("keep_last_dense", False),
            "prune.structure": prune.get("structure", "unstructured"),
            "prune.nm": list(prune.get("nm", [2, 4])),
            "ablate.source_experiment": r["experiment"], "ablate.source_method": r["method"],
            "ablate.source_round": int(r.get("round") or 0)}


def read_source(text: str, rebuild: Callable[[dict], Config]) -> Source:
    """The finished result at `text`, whose saved config `rebuild` turns into a Config (the ablation's own
    `Config.rebuild`); SourceError (one line naming it) when it is missing or unfinished."""
    return Source(*finished_result(text), rebuild)


def finished_result(text: str) -> tuple[Path, dict]:
    """The folder and result.json of the finished result at `text`; SourceError (one line naming it)
    when it is missing or unfinished, an ablation itself, or dense."""
    path = Path(text).expanduser()
    if not path.exists():
        raise SourceError(f"ablate.source: {path}: no such run folder")
    if not path.is_dir():
        raise SourceError(f"ablate.source: {path}: not a run folder")
    folder = RunFolder(path)
    if not folder.finished():
        if not (path / "config.json").is_file() and not path.name.startswith("round_"):
            # no run ever started here: a runs or experiment folder, say
            raise SourceError(f"ablate.source: {path} is not a run's folder: name a seed folder, "
                              f"runs/<experiment>/seed_<s> (or an LTH round folder, .../seed_<s>/round_<r>)")
        status = folder.status()
        detail = f": {status.detail}" if status.detail else ""
        raise SourceError(f"ablate.source: {path} is not a finished result ({status.state}{detail})")
    result = folder.read_result()
    if not isinstance(result.get("config"), dict):
        raise SourceError(f"ablate.source: {path}/result.json has no config")
    if result["config"].get("method") != result.get("method"):
        raise SourceError(f"ablate.source: {path}/result.json says method {result.get('method')!r} but its "
                          f"config says {result['config'].get('method')!r}: not one result")
    from suite.methods import method_class
    if method_class(result["method"]).ablates:  # the sweep never takes one either: one rule
        raise SourceError(f"ablate.source: {path} is itself an ablation ({result['method']}): ablate its "
                          f"source instead")
    if result["achieved_sparsity"] == 0:
        raise SourceError(f"ablate.source: {path} is dense ({result['method']}): there is no mask to ablate")
    return path, result


def _value(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return list(node) if isinstance(node, tuple) else node


def _section(settings: dict, prefixes: tuple[str, ...]) -> dict:
    return {k: v for k, v in settings.items() if k.startswith(prefixes)}


def check_fixed(cfg: Config, source: Source) -> None:
    """One ConfigError line for the first setting that differs from what the source fixes: its model
    and data (every science setting of those sections), seed, prunable set and sparsity."""
    where = f"(ablate.source {source.path})"
    for key, value in source.fixed().items():
        if _value(cfg, key) != value:
            raise ConfigError(f"{key}: {_value(cfg, key)!r} differs from the source's {value!r} {where}: an "
                              f"ablation keeps its source's seed, prunable layers, sparsity and structure; "
                              f"leave {key} out")
    mine = _section(cfg.science(), ("data.", "model."))
    theirs = _section(source.cfg().science(), ("data.", "model."))
    for key in sorted(mine.keys() | theirs.keys()):
        if mine.get(key) != theirs.get(key):
            raise ConfigError(f"{key}: {_value(cfg, key)!r} differs from the source's "
                              f"{_value(source.cfg(), key)!r} {where}: an ablation trains on its source's "
                              f"model and data")


def stream_seed(kind: str, cfg: Config) -> int:
    """A seed of its own for one kind of ablation of one source seed (never the run's seed itself,
    whose stream initialised the source)."""
    a = cfg.ablate
    text = f"ablate-{kind}/{a.source_experiment}/{a.source_round}/{cfg.seed}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


class Ablation(PruningMethod):
    """Train another finished run's mask, changed by one kind of ablation (the subclasses)."""
    name = "ablate"  # the settings section the kinds share (the registry names the kinds)
    settings = AblateConfig
    ablates = True
    config_keys = ("prune.target_sparsity", "prune.keep_")
    from_source_init = True  # trains from the source's initialisation (its rewinding point)

    def __init__(self, cfg: Config, budget=None):
        super().__init__(cfg, budget)
        self._source: Source | None = None

    @classmethod
    def base_config(cls, tree: dict) -> dict:
        """The source's config below the file and the overrides: its model, data, seed and budget
        apply unless overridden (and check_fixed refuses overrides of model, data, seed, sparsity)."""
        from suite.methods import method_sections
        section = tree.get("ablate")
        text = section.get("source") if isinstance(section, dict) else None
        if not text or not isinstance(text, str):
            return {}  # AblateConfig.validate says what is missing
        _, result = finished_result(text)
        others = (set(method_sections()) - {"prune"}) | {"method"}  # other methods' settings: not this run's
        base = {k: copy.deepcopy(v) for k, v in result["config"].items() if k not in others}
        for key, value in fixed_by(result).items():
            section_name, name = key.split(".") if "." in key else (None, key)
            if section_name is None:
                base[name] = value
            else:
                base.setdefault(section_name, {})[name] = value
        return base

    @classmethod
    def check_source(cls, source: Source) -> None:
        """SourceError when this kind does not apply to the source."""
        if cls.from_source_init:
            method = source.method()
            if method.rounds() > 1 and method.rewind_step() > 0:
                raise SourceError(f"ablate.source: {source.path} rewinds to a point after its initialisation, "
                                  f"whose weights the ablations do not read yet, so {cls.name} cannot start from them "
                                  f"(reinit applies)")

    def source(self) -> Source:
        if self._source is None:
            self._source = read_source(self.cfg.ablate.source, type(self.cfg).rebuild)
        return self._source

    def init_seed(self) -> int:
        return self.source().method().init_seed()  # the source's own initialisation

    def check_source_mask(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """SourceError unless the source's mask has exactly these prunable layers and shapes (read from
        its header: the preflight asks before any data loads or any folder is made)."""
        path = self.source().path / "mask.safetensors"
        try:
            found = tensor_shapes(path)
        except InvalidResult as e:
            raise SourceError(f"ablate.source: {self.source().path}/{e}") from None
        if found != {n: tuple(s) for n, s in shapes.items()}:
            theirs = ", ".join(f"{n} {list(s)}" for n, s in found.items())
            mine = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
            raise SourceError(f"ablate.source: {path} holds layers {theirs or 'none'}, not this model's "
                              f"prunable layers {mine}")

    def source_mask(self, mask: Mask) -> Mask:
        """The source's final mask (on the CPU), checked against the layers of this run."""
        self.check_source_mask({n: tuple(m.shape) for n, m in mask.items()})
        try:
            return RunFolder(self.source().path).read_mask()
        except Exception as e:  # safetensors raises its own error types for a damaged file
            raise SourceError(f"ablate.source: {self.source().path}/mask.safetensors is unreadable "
                              f"({type(e).__name__})") from None

    def start_round(self, round_index: int, ctx: Context, mask: Mask) -> Mask | None:
        return self.ablate(self.source_mask(mask), ctx)

    def ablate(self, source: Mask, ctx: Context) -> Mask:
        raise NotImplementedError


class Shuffle(Ablation):
    """The source's mask permuted uniformly at random within each layer, from the source's init."""
    name = "shuffle"

    def ablate(self, source: Mask, ctx: Context) -> Mask:
        generator = torch.Generator().manual_seed(stream_seed(self.name, self.cfg))  # CPU: the same on every rank
        out = {}
        for n, m in source.items():
            units = shuffle_units(m, self.cfg.prune)
            out[n] = units[torch.randperm(units.shape[0], generator=generator)].reshape(m.shape)
        return out


def shuffle_units(mask: torch.Tensor, prune) -> torch.Tensor:
    """A layer's mask as (units, unit size): the pieces `shuffle` permutes, so that a structured
    source stays in its pattern. Unstructured: single weights; nm: the groups of M consecutive
    inputs of a row (`suite.masks.rows_of`), in the layers the pattern covers; channel: whole rows."""
    rows = rows_of(mask)
    if prune.structure == "channel":
        return rows
    if prune.structure == "nm" and nm_layers({"w": mask.shape}, prune.nm[1]):
        return rows.reshape(-1, prune.nm[1])
    return mask.reshape(-1, 1)


class Reinit(Ablation):
    """The source's mask, trained from a fresh initialisation of its own seed stream."""
    name = "reinit"
    from_source_init = False

    def init_seed(self) -> int:
        return stream_seed(self.name, self.cfg)

    def ablate(self, source: Mask, ctx: Context) -> Mask:
        return {n: m.clone() for n, m in source.items()}


def keep_lowest(scores: dict[str, torch.Tensor], counts: dict[str, int]) -> Mask:
    """Per layer, exactly `counts[layer]` weights alive: those with the lowest scores (ties: the
    earliest positions; NaN scores last)."""
    return {n: keep_top({n: -scores[n].detach()}, counts[n])[n].cpu() for n in counts}


class Invert(Ablation):
    """The lowest scores at init of the source's own method, at the source's per-layer counts."""
    name = "invert"

    @classmethod
    def check_source(cls, source: Source) -> None:
        from suite.methods import METHODS, method_class
        method = method_class(source.result["method"])
        if method.init_scores is PruningMethod.init_scores:
            scoring = [n for n in METHODS if method_class(n).init_scores is not PruningMethod.init_scores]
            raise SourceError(f"ablate.source: {source.path} is a result of {source.result['method']}, which does not "
                              f"score weights at initialisation (invert applies to {', '.join(scoring)})")
        super().check_source(source)

    def ablate(self, source: Mask, ctx: Context) -> Mask:
        scores = self.source().method().init_scores(ctx)  # at the source's init, on the source's data
        return keep_lowest(scores, {n: int(torch.count_nonzero(m)) for n, m in source.items()})


class Ticket(Ablation):
    """The source's own final mask, trained sparse from the source's own initialisation."""
    name = "ticket"

    def ablate(self, source: Mask, ctx: Context) -> Mask:
        return {n: m.clone() for n, m in source.items()}


REWIRE_SWEEPS = 10  # rounds of pairing every live weight once: each weight is offered about 10 swaps


def rewire(mask: torch.Tensor, generator: torch.Generator, sweeps: int = REWIRE_SWEEPS) -> torch.Tensor:
    """A mask with exactly the same live count in every row (output neuron) and every column (input)
    as `mask`, from degree-preserving edge swaps: each sweep pairs the live weights at random, and a
    pair (i, j), (k, l) becomes (i, l), (k, j) where both new positions are empty (and no other swap of
    the sweep fills them). A swap keeps every row and column count, so any number of them does."""
    rows = rows_of(mask).clone()
    n_rows, n_cols = rows.shape
    for _ in range(sweeps):
        edges = torch.nonzero(rows)
        pairs = torch.randperm(edges.shape[0], generator=generator)[: edges.shape[0] // 2 * 2].view(-1, 2)
        if pairs.numel() == 0:
            break
        (i, j), (k, l) = edges[pairs[:, 0]].T, edges[pairs[:, 1]].T
        ok = (i != k) & (j != l) & ~rows[i, l] & ~rows[k, j]
        new_a, new_b = i * n_cols + l, k * n_cols + j
        filled = torch.cat([new_a[ok], new_b[ok]])
        values, counts = torch.unique(filled, return_counts=True)
        twice = torch.zeros(n_rows * n_cols, dtype=torch.bool)
        twice[values[counts > 1]] = True  # two swaps would fill one position: neither goes ahead
        ok &= ~twice[new_a] & ~twice[new_b]
        rows[i[ok], j[ok]] = False
        rows[k[ok], l[ok]] = False
        rows[i[ok], l[ok]] = True
        rows[k[ok], j[ok]] = True
    return rows.reshape(mask.shape)


class Rewire(Ablation):
    """The source's mask rewired with every neuron's fan-in and fan-out kept, from the source's init."""
    name = "rewire"

    @classmethod
    def check_source(cls, source: Source) -> None:
        structure = source.config.get("prune", {}).get("structure", "unstructured")
        if structure != "unstructured":
            raise SourceError(f"ablate.source: {source.path} is {structure}-structured; rewire swaps single "
                              f"weights and would break the pattern (shuffle keeps it)")
        super().check_source(source)

    def ablate(self, source: Mask, ctx: Context) -> Mask:
        generator = torch.Generator().manual_seed(stream_seed(self.name, self.cfg))  # CPU: the same on every rank
        return {n: rewire(m, generator) for n, m in source.items()}

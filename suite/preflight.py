"""Checks a run (or a whole sweep) can pass before any data is loaded or any folder is made: the data
files are where data.root says, the global batch fits the training set, and the target leaves a weight.
Each problem is one ConfigError line (exit 2)."""
from __future__ import annotations

import functools
import math

from suite.config import DataConfig, ModelConfig
from suite.errors import ConfigError
from suite.experiment import Config


def data_files_problem(cfg: DataConfig) -> str | None:
    """Why the dataset's files are not where data.root says (the dataset's own line), or None."""
    from suite.datasets import dataset  # late: torch

    return dataset(cfg.name).files_problem(cfg)


def known_spec(cfg: DataConfig) -> tuple[tuple[int, ...], int, int] | None:
    """(input shape, classes, training examples after data.val_size) without loading the data;
    None when unknown."""
    from suite.datasets import dataset

    ds = dataset(cfg.name)
    known, n_train = ds.known(cfg), ds.n_train(cfg)
    return None if known is None or n_train is None else (known[0], known[1], n_train)


@functools.lru_cache(maxsize=None)  # a sweep asks once per model and data shape
def prunable_shapes(model: ModelConfig, data: str, input_shape: tuple[int, ...], classes: int,
                    keep_first_dense: bool, keep_last_dense: bool,
                    include: tuple[str, ...] = ()) -> dict[str, tuple[int, ...]]:
    """The shape of each prunable weight of the configured model, built once on the CPU (the meta
    device would import torch's reference ops, ~5 s) with the caller's RNG state left as it was."""
    import torch

    from suite.data import DataSpec
    from suite.masks import prunable_weights
    from suite.models import build_model
    with torch.random.fork_rng(devices=[]):
        net = build_model(model.name, DataSpec(data, input_shape, classes, 1, 1), config=model)
    return {n: tuple(w.shape) for n, w in prunable_weights(net, keep_first_dense, keep_last_dense, include).items()}


def check_run(cfg: Config, files: bool = True) -> None:
    """Everything about `cfg` that can fail before data is loaded: ConfigError naming the key."""
    from suite.datasets import dataset
    from suite.methods import budgeted_method

    if files:
        problem = data_files_problem(cfg.data)
        if problem:
            raise ConfigError(problem)
    problem = dataset(cfg.data.name).split_problem(cfg.data)  # the split's fault, not the batch's
    if problem:
        raise ConfigError(problem)
    spec = known_spec(cfg.data)
    if spec is None:
        return
    shape, classes, n_train = spec
    if cfg.train.batch_size > n_train:
        held = f" after data.val_size={cfg.data.val_size} held out" if cfg.data.val_size else ""
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is larger than the training set "
                          f"({n_train} examples{held})")
    method = budgeted_method(cfg, n_train // cfg.train.batch_size)  # the schedule's points fit the budget
    target = cfg.prune.target_sparsity
    if not method.prunes or target == 0:
        return
    shapes = prunable_shapes(cfg.model, cfg.data.name, tuple(shape), classes, cfg.prune.keep_first_dense,
                             cfg.prune.keep_last_dense, cfg.prune.include)
    n = sum(math.prod(s) for s in shapes.values())
    if n and round(target * n) >= n:
        raise ConfigError(f"prune.target_sparsity: {target:g} prunes all {n} prunable weights of "
                          f"{cfg.model.name} (round(s * N) = N); a target below {1 - 0.5 / n:.6g} "
                          f"leaves at least one")
    from suite.masks import nm_layers
    if cfg.prune.structure == "nm" and not nm_layers(shapes, cfg.prune.nm[1]):
        rows = sorted({math.prod(s[1:]) for s in shapes.values()})
        raise ConfigError(f"prune.nm: {cfg.prune.nm[0]}:{cfg.prune.nm[1]} applies to no prunable layer of "
                          f"{cfg.model.name}: no row length ({', '.join(map(str, rows))} inputs) is a multiple of "
                          f"{cfg.prune.nm[1]}, so nothing would be N:M; choose an M that divides one")
    if method.ablates:
        method.check_source_mask(shapes)

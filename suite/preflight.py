"""Checks a run (or a whole sweep) can pass before any data is loaded or any folder is made: the data
files are where data.root says, the global batch fits the training set, and the target leaves a weight.
Each problem is one ConfigError line (exit 2)."""
from __future__ import annotations

import functools
import math
import zipfile
from pathlib import Path

from suite.config import Config, ConfigError, DataConfig

# What a dataset's loader will give, known without loading it: (input shape, classes, training examples).
# mnist1d: the package's default arguments, 5000 examples split 80/20.
KNOWN = {"mnist": ((1, 28, 28), 10, 60_000), "cifar10": ((3, 32, 32), 10, 50_000), "mnist1d": ((1, 40), 10, 4_000)}


def data_files_problem(cfg: DataConfig) -> str | None:
    """Why the dataset's files are not where data.root says (the loader's own line), or None. Only
    presence is checked here; the loaders check the contents."""
    from suite.data import MNIST_FILES  # late: torch

    root = Path(cfg.root).expanduser()
    if cfg.name == "mnist" and not cfg.download:
        raw = root / "MNIST" / "raw"
        if not (all((raw / f).is_file() for f in MNIST_FILES) or all((raw / f"{f}.gz").is_file() for f in MNIST_FILES)):
            return (f"MNIST not found: no {MNIST_FILES[0]}[.gz] in {raw} "
                    f"(set data.root to the folder holding MNIST/raw, or data.download=true)")
    if cfg.name == "cifar10" and not cfg.download and not (root / "cifar-10-batches-py").is_dir():
        return (f"CIFAR-10 not found: no {root / 'cifar-10-batches-py'} "
                f"(set data.root to the folder holding cifar-10-batches-py, or data.download=true)")
    if cfg.name == "cifar10_subset":
        path = root / "cifar10-subset" / "cifar10_exact_subset.npz"
        if not path.is_file():
            return (f"CIFAR-10 subset not found: no {path} "
                    f"(set data.root to the folder holding cifar10-subset/; it cannot be downloaded)")
    return None


def _npz_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """The shape of one array in an .npz, read from its header only (None when unreadable: the
    loader then says why)."""
    import numpy as np
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return tuple(read(f)[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def known_spec(cfg: DataConfig) -> tuple[tuple[int, ...], int, int] | None:
    """(input shape, classes, training examples) without loading the data; None when unknown."""
    if cfg.name == "synthetic":
        shape = tuple(cfg.synthetic_shape)
        return ((1, *shape) if len(shape) == 1 else shape), 10, cfg.synthetic_train
    if cfg.name == "cifar10_subset":
        shape = _npz_shape(Path(cfg.root).expanduser() / "cifar10-subset" / "cifar10_exact_subset.npz", "x_train")
        return ((3, 32, 32), 10, shape[0]) if shape else None
    return KNOWN.get(cfg.name)


@functools.lru_cache(maxsize=None)  # a sweep asks once per model and data shape
def prunable_shapes(model_name: str, input_shape: tuple[int, ...], classes: int, keep_first_dense: bool,
                    keep_last_dense: bool) -> dict[str, tuple[int, ...]]:
    """The shape of each prunable weight of the configured model, built once on the CPU (the meta
    device would import torch's reference ops, ~5 s) with the caller's RNG state left as it was."""
    import torch

    from suite.data import DataSpec
    from suite.masks import prunable_weights
    from suite.models import build_model
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_name, DataSpec("preflight", input_shape, classes, 1, 1))
    return {n: tuple(w.shape) for n, w in prunable_weights(model, keep_first_dense, keep_last_dense).items()}


def check_run(cfg: Config, files: bool = True) -> None:
    """Everything about `cfg` that can fail before data is loaded: ConfigError naming the key."""
    from suite.methods import method_class

    if files:
        problem = data_files_problem(cfg.data)
        if problem:
            raise ConfigError(problem)
    spec = known_spec(cfg.data)
    if spec is None:
        return
    shape, classes, n_train = spec
    val_size = int(getattr(cfg.data, "val_size", 0) or 0)  # examples held out for validation do not train
    if val_size >= n_train:
        raise ConfigError(f"data.val_size: {val_size} holds out the whole training set of {cfg.data.name} "
                          f"({n_train} examples); set data.val_size below {n_train}")
    n_train -= val_size
    if cfg.train.batch_size > n_train:
        held = f" after data.val_size={val_size} held out" if val_size else ""
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is larger than the training set "
                          f"({n_train} examples{held})")
    target = cfg.prune.target_sparsity
    method = method_class(cfg.method)
    if not method.prunes or target == 0:
        return
    shapes = prunable_shapes(cfg.model.name, tuple(shape), classes, cfg.prune.keep_first_dense,
                             cfg.prune.keep_last_dense)
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
        method(cfg).check_source_mask(shapes)

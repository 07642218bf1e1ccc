"""Datasets and two loaders that yield the same batches: the whole set on the device
(`loader=device`, the fast path, as airbench) or a torchvision DataLoader (`loader=torchvision`)."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import random
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from suite.config import ConfigError, DataConfig
from suite.results import atomic_write

# Normalisation constants: per-channel mean/std of the training set on the [0, 1] scale.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

# CIFAR augmentation, identical in both loaders: random crop with zero padding, horizontal flip,
# then colour jitter in a FIXED order (brightness, contrast, saturation), each factor drawn from
# U[1 - JITTER, 1 + JITTER]. 0.2 is a mild jitter that keeps CIFAR's colours recognisable.
CROP_PADDING = 4       # pixels of zeros on each side before the random crop
FLIP_P = 0.5           # probability of a horizontal flip
JITTER = 0.2           # brightness = contrast = saturation = 0.2

EVAL_BATCH = 1024      # test batches hold at least this many examples (no gradients: bigger is faster)
SYNTHETIC_CLASSES = 10
SYNTHETIC_NOISE = 2.5  # std of the per-example noise around a class prototype (prototypes have std 1)


@dataclass(frozen=True)
class DataSpec:
    """What a model and a method need to know about a dataset."""
    name: str
    input_shape: tuple[int, ...]   # per example after normalisation, e.g. (1, 28, 28), (3, 32, 32), (1, 40)
    num_classes: int
    n_train: int
    n_test: int
    n_val: int = 0                 # held out of the training set (data.val_size)


# --- seeded index plans (pure functions) -------------------------------------------------------

def stream_seed(*parts: object) -> int:
    """A 63-bit generator seed that is a pure function of `parts` (stable across processes,
    unlike Python's salted hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded from `parts`; never the global torch RNG."""
    return torch.Generator().manual_seed(stream_seed(*parts))


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The training order of one epoch, the same on every rank."""
    return torch.randperm(n, generator=generator("train", seed, epoch))


def shard_global_batches(order: Tensor, batch_size: int, rank: int, world_size: int) -> Tensor:
    """(steps, batch_size // world_size): global batch j is order[j*B:(j+1)*B]; rank r takes
    its positions r::world_size; a last partial global batch is dropped."""
    steps = len(order) // batch_size
    return order[: steps * batch_size].view(steps, batch_size)[:, rank::world_size]


def split_evenly(indices: Tensor, n_batches: int) -> list[Tensor]:
    """`indices` in `n_batches` consecutive chunks whose sizes differ by at most one."""
    return list(torch.tensor_split(indices, n_batches))


# --- the CIFAR augmentation, batched on tensors ------------------------------------------------
# The torchvision loader runs torchvision's PIL transforms. These functions reproduce PIL's
# arithmetic bit for bit (tests/test_data.py checks it against torchvision.transforms.functional),
# so the two loaders differ only in which random numbers they draw, not in what they compute.

def crop_flip(x: Tensor, top: Tensor, left: Tensor, flip: Tensor, padding: int = CROP_PADDING) -> Tensor:
    """Pad (B, C, H, W) with zeros, crop H x W at per-image offsets (top, left) in
    [0, 2*padding], and mirror the images where `flip`: one gather, no per-image loop."""
    b, c, h, w = x.shape
    wp = w + 2 * padding
    padded = F.pad(x, (padding, padding, padding, padding)).view(b, c, -1)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = left.view(b, 1) + torch.where(flip.view(b, 1), (w - 1) - cols, cols)
    rows = top.view(b, 1) + torch.arange(h, device=x.device)
    # flat position in each padded image; one gather is ~5x faster than 4-tensor advanced indexing
    where = (rows.view(b, h, 1) * wp + cols.view(b, 1, w)).view(b, 1, h * w).expand(b, c, h * w)
    return padded.gather(2, where).view(b, c, h, w)


def _pil_luma(x: Tensor) -> Tensor:
    """PIL's RGB -> L conversion on integer-valued floats: (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    Exact in float32 in any summation order: every intermediate is an integer below 2^24."""
    luma = x[:, 0:1] * 19595
    luma.add_(x[:, 1:2], alpha=38470).add_(x[:, 2:3], alpha=7471).add_(32768)
    return luma.div_(65536).floor_()


def _pil_blend_(image: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    """PIL's Image.blend(degenerate, image, factor), in place on `image`: degenerate + factor *
    (image - degenerate) in float32 (separate roundings, as PIL's C loop), clipped to [0, 255],
    truncated to an integer."""
    return image.sub_(degenerate).mul_(factor).add_(degenerate).clamp_(0, 255).floor_()


def color_jitter(x: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor) -> Tensor:
    """Brightness, then contrast, then saturation on (B, 3, H, W) floats holding integers 0..255,
    with per-image factors, in place; equals torchvision's adjust_* on PIL images."""
    shape = (-1, 1, 1, 1)
    x.mul_(brightness.view(shape)).clamp_(0, 255).floor_()  # blend with black: 0 + f * (x - 0)
    # contrast blends towards the rounded mean luma; the float32 sum of at most 65,793 integer
    # lumas is exact, and no quotient lies within float32 rounding of k + 0.5 without being it
    luma = _pil_luma(x)
    mean = torch.floor(luma.sum(dim=(1, 2, 3), keepdim=True) / luma[0].numel() + 0.5)
    _pil_blend_(x, mean, contrast.view(shape))
    return _pil_blend_(x, _pil_luma(x), saturation.view(shape))


@dataclass
class AugmentParams:
    """Random parameters of the CIFAR augmentation for a run of images."""
    top: Tensor         # int64, crop offset in [0, 2 * CROP_PADDING]
    left: Tensor        # int64
    flip: Tensor        # bool
    factors: Tensor     # float32 (n, 3): brightness, contrast, saturation

    def to(self, device: torch.device) -> "AugmentParams":
        return AugmentParams(*(t.to(device, non_blocking=True) for t in (self.top, self.left, self.flip, self.factors)))

    def split(self, sizes: list[int]) -> list["AugmentParams"]:
        parts = [t.split(sizes) for t in (self.top, self.left, self.flip, self.factors)]
        return [AugmentParams(*p) for p in zip(*parts)]


def draw_augment_params(n: int, gen: torch.Generator, jitter: float = JITTER) -> AugmentParams:
    """Parameters for n images: offsets uniform on {0..8}, flips with p=0.5, factors uniform on
    [1 - jitter, 1 + jitter] (jitter 0: every factor is 1, the identity)."""
    top = torch.randint(0, 2 * CROP_PADDING + 1, (n,), generator=gen)
    left = torch.randint(0, 2 * CROP_PADDING + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < FLIP_P
    factors = (1 - jitter) + 2 * jitter * torch.rand(n, 3, generator=gen)
    return AugmentParams(top, left, flip, factors)


def augment_cifar(x: Tensor, p: AugmentParams) -> Tensor:
    """Crop, flip and jitter a uint8 batch; float32 integer values 0..255 out."""
    x = crop_flip(x, p.top, p.left, p.flip).float()
    return color_jitter(x, p.factors[:, 0], p.factors[:, 1], p.factors[:, 2])


def cifar_torchvision_transform(size: tuple[int, int], mean: tuple, std: tuple, jitter: float = JITTER):
    """The same augmentation as torchvision transforms on PIL images (the reference pipeline)."""
    from torchvision import transforms as T

    return T.Compose([
        T.RandomCrop(size, padding=CROP_PADDING),
        T.RandomHorizontalFlip(FLIP_P),
        # three single-factor jitters: ColorJitter alone would apply them in a random order
        T.ColorJitter(brightness=jitter),
        T.ColorJitter(contrast=jitter),
        T.ColorJitter(saturation=jitter),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


# --- datasets ------------------------------------------------------------------------------------

@dataclass
class Source:
    """One dataset in memory: arrays for the device loader, dataset objects for torchvision's."""
    spec: DataSpec
    train_x: Tensor           # (N, C, H, W) uint8 images, or (N, C, L) float32 already normalised
    train_y: Tensor           # int64
    test_x: Tensor
    test_y: Tensor
    train_set: torch.utils.data.Dataset  # (PIL image or float tensor, int label), untransformed
    test_set: torch.utils.data.Dataset
    mean: tuple[float, ...] | None = None  # images only: per-channel normalisation on [0, 1]
    std: tuple[float, ...] | None = None
    augmentable: bool = False            # has the CIFAR augmentation
    val_x: Tensor | None = None          # data.val_size examples held out of the training set
    val_y: Tensor | None = None
    val_set: torch.utils.data.Dataset | None = None


def validation_indices(n_train: int, val_size: int) -> Tensor:
    """Which training examples are held out: a fixed seeded draw that depends only on the set's
    size, so every method and seed validates on the same examples (sorted)."""
    return torch.randperm(n_train, generator=generator("validation", n_train))[:val_size].sort().values


def hold_out(source: Source, val_size: int) -> Source:
    """`source` with `val_size` training examples moved to a validation split (the rest keep their order)."""
    if val_size == 0:
        return source
    n = source.spec.n_train
    if val_size >= n:
        raise ConfigError(f"data.val_size: {val_size} leaves no training example ({source.spec.name} has {n})")
    held = validation_indices(n, val_size)
    keep = torch.ones(n, dtype=torch.bool)
    keep[held] = False
    kept = torch.nonzero(keep).flatten()
    subset = torch.utils.data.Subset
    spec = dataclasses.replace(source.spec, n_train=n - val_size, n_val=val_size)
    return dataclasses.replace(
        source, spec=spec, train_x=source.train_x[kept], train_y=source.train_y[kept],
        val_x=source.train_x[held], val_y=source.train_y[held],
        train_set=subset(source.train_set, kept.tolist()), val_set=subset(source.train_set, held.tolist()))


class TensorPairs(torch.utils.data.Dataset):
    """(x[i], int(y[i])) pairs of float tensors: mnist1d and synthetic under the torchvision loader."""

    def __init__(self, x: Tensor, y: Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


class RGBImages(torch.utils.data.Dataset):
    """(PIL RGB image, int label) from an (N, H, W, 3) uint8 array, as torchvision's CIFAR10."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return Image.fromarray(self.x[i]), int(self.y[i])


def cache_dir(cfg: DataConfig) -> Path:
    """Where unpacked and generated files are kept: data.cache_dir, else ~/.cache/progressive-pruning."""
    return Path(cfg.cache_dir or "~/.cache/progressive-pruning").expanduser()


def _spec(name: str, train_x: Tensor, test_x: Tensor, num_classes: int) -> DataSpec:
    return DataSpec(name, tuple(train_x.shape[1:]), num_classes, len(train_x), len(test_x))


def _image_source(name: str, train_set, test_set, train_x: np.ndarray | Tensor, train_y, test_x, test_y,
                  mean: tuple, std: tuple, augmentable: bool) -> Source:
    """Wrap uint8 arrays ((N, H, W) or (N, H, W, C)) as a Source of (N, C, H, W) images."""
    def chw(a) -> Tensor:
        t = torch.as_tensor(a)
        return t.unsqueeze(1).contiguous() if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()

    tx, vx = chw(train_x), chw(test_x)
    ty, vy = (torch.as_tensor(np.asarray(y), dtype=torch.int64) for y in (train_y, test_y))
    return Source(_spec(name, tx, vx, 10), tx, ty, vx, vy, train_set, test_set, mean, std, augmentable)


MNIST1D_SHAPE = (40,)  # one example of MNIST-1D: 40 floats
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # unsigned bytes; 3 or 1 dimensions
MNIST_SIDE = 28


def check_idx(path: Path, shown: Path | None = None) -> int:
    """Check an MNIST IDX file (magic, dimensions, and a length that matches its header); the
    number of examples, else one ConfigError naming the file (`shown`, e.g. the .gz it came from)."""
    kind = "images" if "images" in path.name else "labels"
    shown = shown or path
    try:
        with open(path, "rb") as f:
            header = f.read(16 if kind == "images" else 8)
        size = path.stat().st_size
    except OSError as e:
        raise ConfigError(f"{shown}: cannot be read ({e.strerror})") from None
    if len(header) < 8:
        raise ConfigError(f"{shown}: not an MNIST IDX {kind} file ({size} bytes, shorter than its header)")
    magic, count = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
    if magic != IDX_MAGIC[kind]:
        raise ConfigError(f"{shown}: not an MNIST IDX {kind} file (magic number {magic:#010x}, "
                          f"expected {IDX_MAGIC[kind]:#010x})")
    per_item = 1
    if kind == "images":
        if len(header) < 16:
            raise ConfigError(f"{shown}: truncated IDX header ({size} bytes)")
        rows, cols = int.from_bytes(header[8:12], "big"), int.from_bytes(header[12:16], "big")
        if (rows, cols) != (MNIST_SIDE, MNIST_SIDE):
            raise ConfigError(f"{shown}: images are {rows}x{cols}, expected {MNIST_SIDE}x{MNIST_SIDE}")
        per_item = rows * cols
    expected = len(header) + count * per_item
    if count == 0 or size != expected:
        raise ConfigError(f"{shown}: the header says {count} {kind} ({expected} bytes) but the file has "
                          f"{size} bytes (truncated or corrupt)")
    return count


def _check_mnist_raw(raw: Path, shown: Callable[[str], Path]) -> None:
    """Every IDX file valid, and as many labels as images in each split."""
    counts = {f: check_idx(raw / f, shown(f)) for f in MNIST_FILES}
    for images, labels in ((MNIST_FILES[0], MNIST_FILES[1]), (MNIST_FILES[2], MNIST_FILES[3])):
        if counts[images] != counts[labels]:
            raise ConfigError(f"{shown(labels)}: {counts[labels]} labels for {counts[images]} images "
                              f"in {shown(images)}")


def _source_key(src: Path) -> dict:
    st = src.stat()
    return {"source": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _unpack_gz(src: Path, target: Path) -> None:
    """Unpack `src` into the cache at `target`, atomically, with a note of the source it came from:
    a cached copy is reused only while the .gz keeps its size and mtime, and only if it is valid."""
    note = target.with_name(target.name + ".source.json")
    key = _source_key(src)
    try:
        if json.loads(note.read_text()) == key:
            check_idx(target)
            return
    except (OSError, ValueError, ConfigError):
        pass  # no note, another source, or a damaged copy: unpack again

    def unpack(tmp: Path) -> None:
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        check_idx(Path(tmp), src)

    try:
        atomic_write(target, unpack)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ConfigError(f"{src}: not a complete gzip file ({type(e).__name__}: {e})") from None
    atomic_write(note, lambda tmp: Path(tmp).write_text(json.dumps(key)))


def _mnist_root(cfg: DataConfig) -> Path:
    """A root whose MNIST/raw holds the uncompressed IDX files torchvision reads, all checked; .gz
    files found under data.root are unpacked into the cache (torchvision would not unpack them itself)."""
    root = Path(cfg.root).expanduser()
    raw = root / "MNIST" / "raw"
    if all((raw / f).is_file() for f in MNIST_FILES):
        _check_mnist_raw(raw, lambda f: raw / f)
        return root
    if all((raw / f"{f}.gz").is_file() for f in MNIST_FILES):
        cached = cache_dir(cfg)
        for f in MNIST_FILES:
            _unpack_gz(raw / f"{f}.gz", cached / "MNIST" / "raw" / f)
        _check_mnist_raw(cached / "MNIST" / "raw", lambda f: raw / f"{f}.gz")
        return cached
    if cfg.download:
        return root
    raise ConfigError(f"MNIST not found: no {MNIST_FILES[0]}[.gz] in {raw} "
                      f"(set data.root to the folder holding MNIST/raw, or data.download=true)")


def load_mnist(cfg: DataConfig) -> Source:
    from torchvision.datasets import MNIST

    root = str(_mnist_root(cfg))
    train = MNIST(root, train=True, download=cfg.download)
    test = MNIST(root, train=False, download=cfg.download)
    return _image_source("mnist", train, test, train.data, train.targets, test.data, test.targets,
                         MNIST_MEAN, MNIST_STD, augmentable=False)


def load_cifar10(cfg: DataConfig) -> Source:
    from torchvision.datasets import CIFAR10

    root = Path(cfg.root).expanduser()
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and not cfg.download:
        raise ConfigError(f"CIFAR-10 not found: no {folder} "
                          f"(set data.root to the folder holding cifar-10-batches-py, or data.download=true)")
    try:
        train = CIFAR10(str(root), train=True, download=cfg.download)
        test = CIFAR10(str(root), train=False, download=cfg.download)
    except RuntimeError as e:  # torchvision's md5 check failed
        raise ConfigError(f"CIFAR-10 in {folder} is incomplete or corrupt ({e})") from None
    return _image_source("cifar10", train, test, train.data, train.targets, test.data, test.targets,
                         CIFAR_MEAN, CIFAR_STD, augmentable=True)


def load_cifar10_subset(cfg: DataConfig) -> Source:
    path = Path(cfg.root).expanduser() / "cifar10-subset" / "cifar10_exact_subset.npz"
    if not path.is_file():
        raise ConfigError(f"CIFAR-10 subset not found: no {path} "
                          f"(set data.root to the folder holding cifar10-subset/; it cannot be downloaded)")
    x, y, vx, vy = read_npz(path, ("x_train", "y_train", "x_test", "y_test"), image_shape=(32, 32, 3),
                            image_dtype=np.uint8)
    return _image_source("cifar10_subset", RGBImages(x, y), RGBImages(vx, vy), x, y, vx, vy,
                         CIFAR_MEAN, CIFAR_STD, augmentable=True)


def read_npz(path: Path, keys: tuple[str, str, str, str], image_shape: tuple[int, ...], image_dtype) -> list:
    """(x, y, x_test, y_test) from an .npz, checked: the keys, the example shape and dtype, integer
    labels in 0..9, one label per example; else one ConfigError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ConfigError(f"{path}: lacks the arrays {', '.join(missing)} (has {', '.join(z.files) or 'none'})")
            arrays = [z[k] for k in keys]
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ConfigError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    for (xk, yk), (x, y) in zip((keys[:2], keys[2:]), (arrays[:2], arrays[2:])):
        if x.dtype != image_dtype or tuple(x.shape[1:]) != tuple(image_shape) or len(x) == 0:
            raise ConfigError(f"{path}: {xk} is {x.dtype} {tuple(x.shape)}, expected "
                              f"{np.dtype(image_dtype)} (N, {', '.join(map(str, image_shape))})")
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
            raise ConfigError(f"{path}: {yk} is {y.dtype} {tuple(y.shape)}, expected integer labels ({len(x)},)")
        if y.min() < 0 or y.max() > 9:
            raise ConfigError(f"{path}: {yk} holds labels outside 0..9 ({y.min()}..{y.max()})")
    return arrays


def _float_source(name: str, x: np.ndarray | Tensor, y, vx, vy, num_classes: int) -> Source:
    tx, vxx = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(vx, dtype=torch.float32)
    ty, vyy = torch.as_tensor(y, dtype=torch.int64), torch.as_tensor(vy, dtype=torch.int64)
    return Source(_spec(name, tx, vxx, num_classes), tx, ty, vxx, vyy, TensorPairs(tx, ty), TensorPairs(vxx, vyy))


# mnist1d's get_dataset_args() (0.0.2.post1), without the download url: the dataset this suite means by
# MNIST-1D, and its cache file's name. Written out so that a cached run never imports the package
# (it imports matplotlib, scipy and requests: about a second of every run's start-up).
MNIST1D_ARGS = {"corr_noise_scale": 0.25, "final_seq_length": 40, "iid_noise_scale": 2e-2, "max_translation": 48,
                "num_samples": 5000, "padding": [36, 60], "scale_coeff": 0.4, "seed": 42, "shear_scale": 0.75,
                "shuffle_seq": False, "template_len": 12, "train_split": 0.8}


def load_mnist1d(cfg: DataConfig) -> Source:
    """MNIST-1D generated locally with the package's default arguments (never downloaded),
    cached as .npz; standardised with the training set's scalar mean and std."""
    path = cache_dir(cfg) / "mnist1d" / f"mnist1d-{stream_seed(MNIST1D_ARGS) % 16**10:010x}.npz"
    arrays = None
    if path.is_file():
        try:  # a cache: a damaged copy is made again, never used
            arrays = read_npz(path, ("x", "y", "x_test", "y_test"), MNIST1D_SHAPE, np.float64)
        except ConfigError:
            arrays = None
    if arrays is None:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        for key, value in MNIST1D_ARGS.items():
            setattr(args, key, value)
        # make_dataset reseeds Python's and NumPy's global RNGs; give the caller theirs back
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            d = make_dataset(args)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: given a name, savez would append ".npz"
                np.savez(f, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        atomic_write(path, save)
        arrays = read_npz(path, ("x", "y", "x_test", "y_test"), MNIST1D_SHAPE, np.float64)
    x, y, vx, vy = arrays
    mean, std = x.mean(), x.std()
    x, vx = ((a - mean) / std for a in (x, vx))
    return _float_source("mnist1d", x[:, None, :], y, vx[:, None, :], vy, 10)


def synthetic_arrays(shape: tuple[int, ...], n_train: int, n_test: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """10 classes, each a smooth random prototype (blocks of ~4 pixels) plus per-example noise,
    scaled to unit variance; independent of the run seed and of the global RNG."""
    shape = (1, *shape) if len(shape) == 1 else tuple(shape)
    spatial = shape[1:]
    coarse = torch.randn(SYNTHETIC_CLASSES, shape[0], *(math.ceil(s / 4) for s in spatial),
                         generator=generator("synthetic", "prototypes", shape))
    protos = F.interpolate(coarse, size=spatial, mode="nearest")
    scale = 1.0 / math.sqrt(1.0 + SYNTHETIC_NOISE**2)

    def draw(split: str, n: int) -> tuple[Tensor, Tensor]:
        gen = generator("synthetic", split, shape, n)
        labels = (torch.arange(n) % SYNTHETIC_CLASSES)[torch.randperm(n, generator=gen)]
        x = (protos[labels] + SYNTHETIC_NOISE * torch.randn(n, *shape, generator=gen)) * scale
        return x, labels

    return (*draw("train", n_train), *draw("test", n_test))


def load_synthetic(cfg: DataConfig) -> Source:
    x, y, vx, vy = synthetic_arrays(cfg.synthetic_shape, cfg.synthetic_train, cfg.synthetic_test)
    return _float_source("synthetic", x, y, vx, vy, SYNTHETIC_CLASSES)


DATASETS: dict[str, Callable[[DataConfig], Source]] = {
    "synthetic": load_synthetic,
    "mnist1d": load_mnist1d,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar10_subset": load_cifar10_subset,
}


# --- the loaders ---------------------------------------------------------------------------------

class Data:
    """This rank's batches of one dataset; the index plans (which examples, in which order, on
    which rank) live here, the two loaders only differ in how they fetch a planned batch."""

    def __init__(self, source: Source, *, batch_size: int, seed: int, rank: int, world_size: int,
                 device: torch.device | str, augment: bool, jitter: float = JITTER):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in a world of {world_size} processes")
        if batch_size % world_size:
            raise ConfigError(f"train.batch_size: {batch_size} is not divisible by the world size {world_size}")
        self.source, self.spec = source, source.spec
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.device = torch.device(device)
        self.local_batch_size = batch_size // world_size
        self.eval_batch_size = max(self.local_batch_size, EVAL_BATCH)
        self.steps_per_epoch = self.spec.n_train // batch_size  # the same on every rank
        self.augment = augment and source.augmentable
        self.jitter = jitter

    # plans: lists of index tensors (CPU, int64), one per batch of this rank

    def train_plan(self, epoch: int) -> list[Tensor]:
        order = epoch_permutation(self.spec.n_train, self.seed, epoch)
        return list(shard_global_batches(order, self.batch_size, self.rank, self.world_size))

    def test_plan(self, n: int | None = None) -> list[Tensor]:
        # every rank gets the same number of batches, shards differ in length by at most one
        n = self.spec.n_test if n is None else n
        longest = math.ceil(n / self.world_size)
        n_batches = math.ceil(longest / self.eval_batch_size)
        return split_evenly(torch.arange(self.rank, n, self.world_size), n_batches)

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's shard of each global batch of `epoch`, augmented where the dataset has
        augmentation, normalised, on the device."""
        stream = ("augment", self.seed, epoch, self.rank) if self.augment else None
        return self._fetch("train", self.train_plan(epoch), stream)

    def test_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's disjoint shard of the test set; over all ranks every example exactly once."""
        return self._fetch("test", self.test_plan(), None)

    def val_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's disjoint shard of the validation split (data.val_size), like test_batches."""
        return self._fetch("val", self.test_plan(self.spec.n_val), None)

    def scoring_batches(self, n: int) -> list[tuple[Tensor, Tensor]]:
        """The first n global batches of a fixed seeded training order (not an epoch's), this
        rank's shard, without augmentation: SNIP's scoring data."""
        if n * self.batch_size > self.spec.n_train:
            raise ConfigError(f"snip.batches: {n} batches of {self.batch_size} need {n * self.batch_size} "
                              f"training examples; {self.spec.name} has {self.spec.n_train}")
        order = torch.randperm(self.spec.n_train, generator=generator("scoring", self.seed))
        plan = shard_global_batches(order[: n * self.batch_size], self.batch_size, self.rank, self.world_size)
        return list(self._fetch("train", list(plan), None))

    def class_balanced(self, per_class: int) -> list[tuple[Tensor, Tensor]]:
        """A seeded draw of `per_class` training examples of every class (GraSP's scoring data),
        ordered class by class; this rank takes positions rank::world_size, in batches of at
        most local_batch_size (the same number of batches on every rank)."""
        labels = self.source.train_y
        gen = generator("balanced", self.seed)
        picked = []
        for c in range(self.spec.num_classes):
            members = torch.nonzero(labels == c).flatten()
            if len(members) < per_class:
                raise ConfigError(f"grasp.samples_per_class: {per_class} exceeds the {len(members)} training "
                                  f"examples of class {c} in {self.spec.name}")
            picked.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
        chosen = torch.cat(picked)
        longest = math.ceil(len(chosen) / self.world_size)
        n_batches = max(1, math.ceil(longest / self.local_batch_size))
        return list(self._fetch("train", split_evenly(chosen[self.rank::self.world_size], n_batches), None))

    def _fetch(self, split: str, plan: list[Tensor], stream: tuple | None) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError


class DeviceData(Data):
    """The whole dataset on the device as uint8 (or float); each batch is a gather plus a few
    batched ops for augmentation and normalisation. No DataLoader, no per-image Python."""

    def __init__(self, source: Source, **kw):
        super().__init__(source, **kw)
        dev = self.device
        self.arrays = {
            "train": (source.train_x.to(dev), source.train_y.to(dev)),
            "test": (source.test_x.to(dev), source.test_y.to(dev)),
        }
        if source.val_x is not None:
            self.arrays["val"] = (source.val_x.to(dev), source.val_y.to(dev))
        self.mean = self.std = None
        if source.mean is not None:
            self.mean = torch.tensor(source.mean, dtype=torch.float32, device=dev).view(-1, 1, 1)
            self.std = torch.tensor(source.std, dtype=torch.float32, device=dev).view(-1, 1, 1)

    def _fetch(self, split, plan, stream):
        if not plan:
            return
        x_all, y_all = self.arrays[split]
        sizes = [len(p) for p in plan]
        batches = torch.cat(plan).to(self.device, non_blocking=True).split(sizes)
        params = None
        if stream is not None:
            params = draw_augment_params(sum(sizes), generator(*stream), self.jitter).to(self.device).split(sizes)
        for k, idx in enumerate(batches):
            x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
            if params is not None:
                x = augment_cifar(x, params[k])
            if self.mean is not None:
                # the same ops as ToTensor + Normalize, so the loaders agree bit for bit
                x = x.float().div_(255).sub_(self.mean).div_(self.std)
            yield x, y


class _Keyed(torch.utils.data.Dataset):
    """dataset[(index, seed)]: the example, transformed under its own seed (seed < 0: no
    randomness used). The global RNG is saved and restored around each draw."""

    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        x, y = self.base[index]
        if self.transform is None:
            return x, y
        if seed < 0:
            return self.transform(x), y
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA
            return self.transform(x), y


class TorchvisionData(Data):
    """A torch DataLoader over the dataset with torchvision transforms (the reference
    pipeline), fed the same index plans as DeviceData."""

    def __init__(self, source: Source, *, num_workers: int = 0, **kw):
        super().__init__(source, **kw)
        self.num_workers = num_workers
        self.train_transform = self.eval_transform = None
        if source.mean is not None:
            from torchvision import transforms as T

            self.eval_transform = T.Compose([T.ToTensor(), T.Normalize(source.mean, source.std)])
            self.train_transform = self.eval_transform
            if self.augment:
                self.train_transform = cifar_torchvision_transform(self.spec.input_shape[1:], source.mean, source.std,
                                                                   self.jitter)

    def _fetch(self, split, plan, stream):
        if not plan:
            return
        if split == "train":
            base, transform = self.source.train_set, (self.train_transform if stream else self.eval_transform)
        else:
            base, transform = getattr(self.source, f"{split}_set"), self.eval_transform
        sizes = [len(p) for p in plan]
        if stream is not None:
            seeds = torch.randint(0, 1 << 62, (sum(sizes),), generator=generator(*stream)).split(sizes)
        else:
            seeds = [torch.full((s,), -1) for s in sizes]
        keys = [list(zip(p.tolist(), s.tolist())) for p, s in zip(plan, seeds)]
        loader = torch.utils.data.DataLoader(
            _Keyed(base, transform), batch_sampler=keys, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(0),  # else it draws worker seeds from the global RNG
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def build_data(cfg: DataConfig, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
               device: torch.device | str = "cpu") -> Data:
    """Load dataset `cfg.name` and the loader `cfg.loader` for this rank."""
    if cfg.name not in DATASETS:
        raise ConfigError(f"unknown dataset '{cfg.name}' (valid: {', '.join(sorted(DATASETS))})")
    if batch_size < 1:
        raise ConfigError(f"train.batch_size: must be at least 1, got {batch_size}")
    if batch_size % world_size:  # before loading anything
        raise ConfigError(f"train.batch_size: {batch_size} is not divisible by the world size {world_size}")
    source = hold_out(DATASETS[cfg.name](cfg), cfg.val_size)
    kw = dict(batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, device=device, augment=cfg.augment,
              jitter=cfg.jitter)
    if cfg.loader == "device":
        return DeviceData(source, **kw)
    if cfg.loader == "torchvision":
        return TorchvisionData(source, num_workers=cfg.num_workers, **kw)
    raise ConfigError(f"data.loader: '{cfg.loader}' is not one of device, torchvision")

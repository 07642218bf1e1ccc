"""What every dataset shares: the seeded index plans, the CIFAR augmentation, and two loaders that
yield the same batches: the whole set on the device (`loader=device`, the fast path, as airbench) or a
torchvision DataLoader (`loader=torchvision`). Each dataset itself is one class in suite/datasets/."""
from __future__ import annotations

import dataclasses
import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from suite.config import DataConfig
from suite.errors import ConfigError

# CIFAR augmentation, identical in both loaders: random crop with zero padding, horizontal flip,
# then colour jitter in a FIXED order (brightness, contrast, saturation), each factor drawn from
# U[1 - JITTER, 1 + JITTER]. 0.2 is a mild jitter that keeps CIFAR's colours recognisable.
CROP_PADDING = 4       # pixels of zeros on each side before the random crop
FLIP_P = 0.5           # probability of a horizontal flip
JITTER = 0.2           # brightness = contrast = saturation = 0.2

EVAL_BATCH = 1024      # test batches hold at least this many examples (no gradients: bigger is faster)


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


def spec_of(name: str, train_x: Tensor, test_x: Tensor, num_classes: int) -> DataSpec:
    """The DataSpec of arrays with examples along the first dimension."""
    return DataSpec(name, tuple(train_x.shape[1:]), num_classes, len(train_x), len(test_x))


def image_source(name: str, train_set, test_set, train_x: np.ndarray | Tensor, train_y, test_x, test_y,
                  mean: tuple, std: tuple, augmentable: bool) -> Source:
    """Wrap uint8 arrays ((N, H, W) or (N, H, W, C)) as a Source of (N, C, H, W) images."""
    def chw(a) -> Tensor:
        t = torch.as_tensor(a)
        return t.unsqueeze(1).contiguous() if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()

    tx, vx = chw(train_x), chw(test_x)
    ty, vy = (torch.as_tensor(np.asarray(y), dtype=torch.int64) for y in (train_y, test_y))
    return Source(spec_of(name, tx, vx, 10), tx, ty, vx, vy, train_set, test_set, mean, std, augmentable)


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


def float_source(name: str, x: np.ndarray | Tensor, y, vx, vy, num_classes: int) -> Source:
    tx, vxx = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(vx, dtype=torch.float32)
    ty, vyy = torch.as_tensor(y, dtype=torch.int64), torch.as_tensor(vy, dtype=torch.int64)
    return Source(spec_of(name, tx, vxx, num_classes), tx, ty, vxx, vyy, TensorPairs(tx, ty), TensorPairs(vxx, vyy))


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

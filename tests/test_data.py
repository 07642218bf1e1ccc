"""Datasets and loaders: index plans, rank shards, the two loaders' equality, the augmentation
(exact against torchvision's PIL ops; same distribution in both loaders), real-data values."""
import dataclasses
import gzip
import hashlib
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from helpers import cli, one_error, snapshot
from suite import run as RUN
from suite.config import DataConfig
from suite.data import (CROP_PADDING, JITTER, color_jitter, crop_flip, draw_augment_params, epoch_permutation,
                        generator, shard_global_batches, validation_indices)
from suite.datasets import build_data
from suite.datasets.cifar10 import CIFAR_MEAN, CIFAR_STD
from suite.datasets.cifar10_subset import Cifar10Subset
from suite.datasets.mnist import MNIST_FILES, mnist_root
from suite.errors import ConfigError
from suite.exits import EXIT_BAD_INPUT

SHARED = Path(__file__).parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"offline data not found at {SHARED}")
LOADERS = ("device", "torchvision")


def collect(batches):
    """Concatenate (x, y) batches."""
    xs, ys = zip(*batches)
    return torch.cat(xs), torch.cat(ys)


def normalise_cifar(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> what ToTensor + Normalize make of them."""
    return (images.float() / 255 - torch.tensor(CIFAR_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR_STD).view(3, 1, 1)


def synthetic(**kw) -> DataConfig:
    return DataConfig(name="synthetic", **kw)


def write_cifar_subset(root: Path, x_train, y_train, x_test, y_test) -> Path:
    """A fabricated cifar10-subset npz in the real file layout."""
    folder = root / "cifar10-subset"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "cifar10_exact_subset.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return root


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory) -> Path:
    """200 random training and 50 test images, labels 0..9 round robin."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (250, 32, 32, 3), dtype=np.uint8)
    y = np.arange(250) % 10
    return write_cifar_subset(tmp_path_factory.mktemp("cifar"), x[:200], y[:200], x[200:], y[200:])


# --- specs and synthetic data ---------------------------------------------------------------------

def test_synthetic_spec_and_balanced_labels():
    data = build_data(synthetic(synthetic_train=300, synthetic_test=120), batch_size=32, seed=0)
    assert (data.spec.name, data.spec.input_shape, data.spec.num_classes) == ("synthetic", (3, 8, 8), 10)
    assert (data.spec.n_train, data.spec.n_test) == (300, 120)
    assert torch.bincount(data.source.train_y).tolist() == [30] * 10
    assert data.steps_per_epoch == 9 and data.local_batch_size == 32
    flat = build_data(synthetic(synthetic_shape=(40,)), batch_size=32, seed=0)
    assert flat.spec.input_shape == (1, 40)
    x, y = next(iter(flat.train_batches(0)))
    assert x.shape == (32, 1, 40) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_synthetic_data_ignores_the_run_seed_and_the_global_rng():
    torch.manual_seed(1)
    a = build_data(synthetic(), batch_size=32, seed=1).source
    torch.manual_seed(2)
    b = build_data(synthetic(), batch_size=32, seed=99).source
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x[:256], a.test_x)  # the test split is its own draw
    assert abs(a.train_x.std().item() - 1) < 0.05  # scaled to unit variance


@pytest.mark.parametrize("loader", LOADERS)
def test_loaders_leave_the_global_rngs_alone(loader, fake_cifar):
    data = build_data(DataConfig(name="cifar10_subset", root=str(fake_cifar), loader=loader), batch_size=20, seed=0)
    torch.manual_seed(5)
    state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    collect(data.train_batches(0))
    collect(data.test_batches())
    data.scoring_batches(2)
    data.class_balanced(3)
    assert torch.equal(torch.get_rng_state(), state)
    assert random.getstate() == py_state and np.array_equal(np.random.get_state()[1], np_state[1])


# --- errors --------------------------------------------------------------------------------------

def test_batch_not_divisible_by_world_size():
    with pytest.raises(ConfigError, match=r"train\.batch_size: 30 is not divisible by the world size 4"):
        build_data(synthetic(), batch_size=30, seed=0, rank=0, world_size=4)


def test_unknown_dataset():
    valid = r"\(valid: cifar10, cifar10_subset, mnist, mnist1d, shakespeare_char, synthetic, synthetic_text\)"
    with pytest.raises(ConfigError, match=r"unknown dataset 'imagenet' " + valid):
        build_data(DataConfig(name="imagenet"), batch_size=8, seed=0)


@pytest.mark.parametrize("name,message", [
    ("mnist", r"MNIST not found: no train-images-idx3-ubyte\[\.gz\] in {root}/MNIST/raw "
              r"\(set data\.root .* data\.download=true\)"),
    ("cifar10", r"CIFAR-10 not found: no {root}/cifar-10-batches-py \(set data\.root .* data\.download=true\)"),
    ("cifar10_subset", r"CIFAR-10 subset not found: no {root}/cifar10-subset/cifar10_exact_subset\.npz "
                       r"\(set data\.root"),
])
def test_missing_files_name_the_folder_searched(tmp_path, name, message):
    with pytest.raises(ConfigError, match=message.format(root=tmp_path)):
        build_data(DataConfig(name=name, root=str(tmp_path), cache_dir=str(tmp_path / "cache")), batch_size=8, seed=0)


def test_corrupt_cifar10_folder(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(ConfigError, match=r"CIFAR-10 in .*cifar-10-batches-py is incomplete or corrupt"):
        build_data(DataConfig(name="cifar10", root=str(tmp_path)), batch_size=8, seed=0)


def test_too_many_scoring_batches_or_samples_per_class():
    data = build_data(synthetic(synthetic_train=100), batch_size=32, seed=0)
    with pytest.raises(ConfigError, match=r"snip\.batches: 4 batches of 32 need 128 training examples; "
                                          r"synthetic has 100"):
        data.scoring_batches(4)
    with pytest.raises(ConfigError, match=r"grasp\.samples_per_class: 11 exceeds the 10 training examples of class 0"):
        data.class_balanced(11)


# --- the index plans -----------------------------------------------------------------------------

def test_epoch_permutation_is_a_function_of_seed_and_epoch_only():
    torch.manual_seed(0)
    a = epoch_permutation(1000, 42, 3)
    torch.manual_seed(1)
    assert torch.equal(a, epoch_permutation(1000, 42, 3))
    assert torch.equal(torch.sort(a).values, torch.arange(1000))
    assert not torch.equal(a, epoch_permutation(1000, 42, 4))
    assert not torch.equal(a, epoch_permutation(1000, 43, 3))


def test_global_batches_sharded_by_position():
    order = torch.arange(10, 33)  # 23 examples, B = 6: 3 global batches, 5 dropped
    assert shard_global_batches(order, 6, 0, 1).tolist() == [[10, 11, 12, 13, 14, 15], [16, 17, 18, 19, 20, 21],
                                                            [22, 23, 24, 25, 26, 27]]
    assert shard_global_batches(order, 6, 1, 3).tolist() == [[11, 14], [17, 20], [23, 26]]


@pytest.mark.parametrize("loader", LOADERS)
def test_one_rank_epoch_is_the_permutation(loader):
    data = build_data(synthetic(synthetic_train=100, loader=loader), batch_size=16, seed=7)
    x, y = collect(data.train_batches(2))
    order = epoch_permutation(100, 7, 2)[: 6 * 16]  # 6 steps, last 4 examples dropped
    assert data.steps_per_epoch == 6
    assert torch.equal(x, data.source.train_x[order]) and torch.equal(y, data.source.train_y[order])


def test_two_ranks_split_every_global_batch():
    cfg = synthetic(synthetic_train=100)
    whole = build_data(cfg, batch_size=16, seed=7)
    ranks = [build_data(cfg, batch_size=16, seed=7, rank=r, world_size=2) for r in (0, 1)]
    assert [d.steps_per_epoch for d in ranks] == [6, 6] and ranks[0].local_batch_size == 8
    plans = [d.train_plan(3) for d in ranks]
    for glob, p0, p1 in zip(whole.train_plan(3), *plans):
        assert torch.equal(p0, glob[0::2]) and torch.equal(p1, glob[1::2])
        assert not set(p0.tolist()) & set(p1.tolist())
    batches = [list(d.train_batches(3)) for d in ranks]
    for (x0, y0), (x1, y1), p0 in zip(*batches, plans[0]):
        assert len(y0) == len(y1) == 8
        assert torch.equal(x0, whole.source.train_x[p0])


@pytest.mark.parametrize("world", [2, 3])
def test_test_set_seen_exactly_once_across_ranks(world):
    cfg = synthetic(synthetic_test=1001)
    datas = [build_data(cfg, batch_size=6, seed=0, rank=r, world_size=world) for r in range(world)]
    plans = [d.test_plan() for d in datas]
    seen = torch.cat([torch.cat(p) for p in plans])
    assert torch.equal(torch.sort(seen).values, torch.arange(1001))
    lengths = [sum(len(b) for b in p) for p in plans]
    assert max(lengths) - min(lengths) <= 1
    assert len({len(p) for p in plans}) == 1  # the same number of batches on every rank
    x, y = collect(datas[world - 1].test_batches())
    assert torch.equal(y, datas[0].source.test_y[torch.cat(plans[world - 1])])


def test_scoring_batches_fixed_order_shards_without_augmentation(fake_cifar):
    cfg = DataConfig(name="cifar10_subset", root=str(fake_cifar), augment=True)
    whole = build_data(cfg, batch_size=20, seed=3)
    ranks = [build_data(cfg, batch_size=20, seed=3, rank=r, world_size=2) for r in (0, 1)]
    glob = whole.scoring_batches(3)
    assert len(glob) == 3 and all(len(y) == 20 for _, y in glob)
    raw = normalise_cifar(whole.source.train_x)
    shards = [d.scoring_batches(3) for d in ranks]
    firsts = []
    for k, (x, y) in enumerate(glob):
        # not augmented: every image is exactly one normalised training image, with its label
        idx = torch.tensor([int(torch.nonzero((raw == xi).flatten(1).all(1))[0]) for xi in x])
        assert torch.equal(whole.source.train_y[idx], y)
        firsts.append(idx)
        assert torch.equal(shards[0][k][0], x[0::2]) and torch.equal(shards[1][k][1], y[1::2])
    # a fixed order of its own: not the start of an epoch's order, and the same on every call
    assert not any(torch.equal(firsts[0], whole.train_plan(e)[0]) for e in range(5))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(glob, whole.scoring_batches(3)))


def test_class_balanced_exact_counts_per_class_and_rank():
    cfg = synthetic(synthetic_train=500)
    whole = build_data(cfg, batch_size=12, seed=5)
    x, y = collect(whole.class_balanced(10))
    assert torch.bincount(y, minlength=10).tolist() == [10] * 10
    assert torch.equal(y, torch.arange(10).repeat_interleave(10))  # class by class
    assert len(whole.class_balanced(10)) == 9  # 100 examples in batches of at most 12
    ranks = [build_data(cfg, batch_size=12, seed=5, rank=r, world_size=2) for r in (0, 1)]
    shares = [d.class_balanced(10) for d in ranks]
    assert [len(s) for s in shares] == [9, 9]
    for r, share in enumerate(shares):
        xr, yr = collect(share)
        assert all(len(b[1]) <= 6 for b in share)
        assert torch.equal(xr, x[r::2]) and torch.equal(yr, y[r::2])
        assert torch.bincount(yr).tolist() == [5] * 10
    other = build_data(cfg, batch_size=12, seed=6)
    assert not torch.equal(collect(other.class_balanced(10))[0], x)


# --- the two loaders agree --------------------------------------------------------------------------

def assert_same_batches(a, b):
    a, b = list(a), list(b)
    assert len(a) == len(b) > 0
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == xb.dtype == torch.float32 and ya.dtype == yb.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("cfg", [synthetic(synthetic_train=130, synthetic_test=70),
                                 synthetic(synthetic_shape=(40,), synthetic_train=130, synthetic_test=70),
                                 "cifar_no_augment"], ids=["synthetic", "synthetic-1d", "cifar-subset"])
def test_loaders_yield_identical_batches_without_augmentation(cfg, world, fake_cifar):
    if cfg == "cifar_no_augment":
        cfg = DataConfig(name="cifar10_subset", root=str(fake_cifar), augment=False)
    for rank in range(world):
        dev, tv = (build_data(dataclasses.replace(cfg, loader=lo), batch_size=16, seed=4, rank=rank,
                              world_size=world) for lo in LOADERS)
        assert dev.steps_per_epoch == tv.steps_per_epoch
        assert_same_batches(dev.train_batches(1), tv.train_batches(1))
        assert_same_batches(dev.test_batches(), tv.test_batches())
        assert_same_batches(dev.scoring_batches(2), tv.scoring_batches(2))
        assert_same_batches(dev.class_balanced(2), tv.class_balanced(2))


# --- the augmentation --------------------------------------------------------------------------------

def test_crop_flip_equals_torchvision_pad_crop_hflip():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    top, left = torch.tensor(rng.integers(0, 9, 40)), torch.tensor(rng.integers(0, 9, 40))
    flip = torch.tensor(rng.random(40) < 0.5)
    out = crop_flip(torch.from_numpy(images).permute(0, 3, 1, 2), top, left, flip)
    for k in range(40):
        ref = TF.crop(TF.pad(Image.fromarray(images[k]), CROP_PADDING), int(top[k]), int(left[k]), 32, 32)
        ref = TF.hflip(ref) if flip[k] else ref
        assert torch.equal(out[k], torch.from_numpy(np.array(ref)).permute(2, 0, 1))


def test_color_jitter_equals_torchvision_on_pil_bit_for_bit():
    # PIL computes in float32 and truncates to uint8 after each step; color_jitter must too
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    images[:20] = images[:20] // 64 * 64 + 31  # flat regions, clipping at 255
    images[20:30, :16] = 0                     # a black half, like crop padding
    factors = rng.uniform(1 - JITTER, 1 + JITTER, (60, 3))
    factors[:5] = [[1.2, 1.2, 1.2], [0.8, 0.8, 0.8], [1.0, 1.0, 1.0], [1.2, 0.8, 1.2], [0.8, 1.2, 0.8]]
    f = torch.tensor(factors, dtype=torch.float32)
    out = color_jitter(torch.from_numpy(images).permute(0, 3, 1, 2).float(), f[:, 0], f[:, 1], f[:, 2])
    for k in range(60):
        ref = TF.adjust_brightness(Image.fromarray(images[k]), float(f[k, 0]))
        ref = TF.adjust_contrast(ref, float(f[k, 1]))
        ref = TF.adjust_saturation(ref, float(f[k, 2]))
        assert torch.equal(out[k], torch.from_numpy(np.array(ref)).permute(2, 0, 1).float())


def test_augment_parameter_distributions():
    n = 180_000
    p = draw_augment_params(n, generator("test"))
    # offsets uniform on {0..8}: chi-square, 8 degrees of freedom, P(> 40) ~ 3e-6
    for offsets in (p.top, p.left):
        counts = torch.bincount(offsets).double()
        assert len(counts) == 9 and ((counts - n / 9) ** 2 / (n / 9)).sum() < 40
    assert abs(p.flip.double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / n)  # 5 standard errors
    f = p.factors.double()
    assert f.min() >= 1 - JITTER and f.max() < 1 + JITTER and f.min() < 1 - JITTER + 1e-3
    var = (2 * JITTER) ** 2 / 12  # of U[1 - J, 1 + J]
    assert ((f.mean(0) - 1).abs() < 5 * math.sqrt(var / n)).all()
    assert ((f.var(0) / var - 1).abs() < 0.02).all()  # relative SE of a uniform's variance: sqrt(0.8/n) = 0.2%
    assert f.T.corrcoef()[0, 1:].abs().max() < 5 / math.sqrt(n)  # brightness, contrast, saturation independent


@pytest.mark.parametrize("loader", LOADERS)
def test_augmentation_is_a_function_of_seed_epoch_rank(loader, fake_cifar):
    cfg = DataConfig(name="cifar10_subset", root=str(fake_cifar), loader=loader)
    data = build_data(cfg, batch_size=20, seed=0, rank=1, world_size=2)
    first = list(data.train_batches(1))
    assert_same_batches(first, data.train_batches(1))
    assert_same_batches(first, build_data(cfg, batch_size=20, seed=0, rank=1, world_size=2).train_batches(1))
    again = list(data.train_batches(2))
    assert not torch.equal(first[0][0], again[0][0])
    # test batches are never augmented: equal to the plain normalised images
    x, _ = collect(data.test_batches())
    plain = normalise_cifar(data.source.test_x[data.rank::2])
    assert torch.allclose(x, plain, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_loader_on_cuda_matches_cpu(fake_cifar):
    # augmentation parameters are drawn on the CPU, so the GPU computes the same integer pixels;
    # CUDA divides by a scalar via its reciprocal, so the normalised values may differ by an ulp
    cfg = DataConfig(name="cifar10_subset", root=str(fake_cifar))
    cpu, gpu = (build_data(cfg, batch_size=20, seed=0, device=d) for d in ("cpu", "cuda"))
    for (xc, yc), (xg, yg) in zip(cpu.train_batches(0), gpu.train_batches(0)):
        assert xg.device.type == "cuda" and torch.equal(yc, yg.cpu())
        assert torch.allclose(xc, xg.cpu(), rtol=0, atol=1e-6)


def test_torchvision_loader_augments_the_same_with_workers(fake_cifar):
    cfg = DataConfig(name="cifar10_subset", root=str(fake_cifar), loader="torchvision")
    one = build_data(cfg, batch_size=40, seed=0)
    two = build_data(dataclasses.replace(cfg, num_workers=2), batch_size=40, seed=0)
    assert_same_batches(one.train_batches(0), two.train_batches(0))


def augmented_samples(root: Path, loader: str, epochs: int):
    data = build_data(DataConfig(name="cifar10_subset", root=str(root), loader=loader), batch_size=64, seed=11)
    xs, ys = zip(*(collect(data.train_batches(e)) for e in range(epochs)))
    mean, std = torch.tensor(CIFAR_MEAN).view(3, 1, 1), torch.tensor(CIFAR_STD).view(3, 1, 1)
    return torch.round((torch.cat(xs) * std + mean) * 255), torch.cat(ys)  # back to 0..255


def test_both_loaders_draw_the_same_augmentation_distribution(tmp_path):
    # label 0: a probe, grey 200 on the left half and 60 on the right; every other label: a
    # random coloured image. Both loaders see the same images in the same order (the same
    # plan), so the statistics differ only by their random draws.
    rng = np.random.default_rng(3)
    x = np.repeat(rng.integers(0, 256, (256, 4, 4, 3), dtype=np.uint8), 8, axis=1).repeat(8, axis=2)
    y = np.arange(256) % 2
    x[y == 0] = 60
    x[y == 0, :, :16] = 200
    root = write_cifar_subset(tmp_path, x, y, x[:10], y[:10])
    samples = {lo: augmented_samples(root, lo, epochs=8) for lo in LOADERS}  # 2048 images each
    assert torch.equal(samples["device"][1], samples["torchvision"][1])
    stats = {}
    for lo, (img, labels) in samples.items():
        probe, colour = img[labels == 0], img[labels == 1]
        n = len(probe)
        # flipped iff column 8 (from the bright left half unless mirrored) is darker than column 23
        flipped = (probe[:, 0, 16, 8] < probe[:, 0, 16, 23]).float()
        # crop padding is darker than any image pixel (jitter keeps the order: all factors > 0)
        interior = probe[:, 0, 4:28, 4:28].amin(dim=(1, 2)).view(-1, 1)
        pad_rows = probe[:, 0, :, 16] < interior
        pad_cols = probe[:, 0, 16, :] < interior
        top = 4 - pad_rows[:, :4].sum(1) + pad_rows[:, 28:].sum(1)
        side = 4 - pad_cols[:, :4].sum(1) + pad_cols[:, 28:].sum(1)
        # chi-square against uniform on {0..8}: 8 degrees of freedom, P(> 40) ~ 3e-6
        for offsets in (top, side):
            counts = torch.bincount(offsets, minlength=9).double()
            assert len(counts) == 9 and ((counts - n / 9) ** 2 / (n / 9)).sum() < 40, (lo, counts)
        assert abs(flipped.mean().item() - 0.5) < 5 * math.sqrt(0.25 / n), lo  # 5 standard errors
        stats[lo] = torch.stack([colour.mean(dim=(2, 3)).T, colour.std(dim=(2, 3)).T])  # (2, 3, n) per image
    # paired by position: the mean of the per-image differences is within 5 standard errors of 0
    diff = stats["device"] - stats["torchvision"]
    se = diff.std(dim=2) / math.sqrt(diff.shape[2])
    assert (diff.mean(dim=2).abs() < 5 * se).all(), (diff.mean(dim=2), se)
    # and the spread over samples (set by the jitter range) agrees: the relative standard error
    # of a sample std is 1/sqrt(2n) = 2.2%, so 15% is more than 4 standard errors of the ratio
    spread = {lo: s.std(dim=2) for lo, s in stats.items()}
    assert ((spread["device"] / spread["torchvision"] - 1).abs() < 0.15).all()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@needs_shared
def test_mnist_gz_unpacked_into_cache_and_read(cache):
    data = build_data(DataConfig(name="mnist", root=str(SHARED), cache_dir=str(cache)), batch_size=100, seed=0)
    assert (data.spec.n_train, data.spec.n_test, data.spec.input_shape) == (60000, 10000, (1, 28, 28))
    md5 = {f: hashlib.md5((cache / "MNIST" / "raw" / f).read_bytes()).hexdigest() for f in MNIST_FILES}
    assert md5 == {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
                   "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
                   "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
                   "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"}
    assert int(data.source.train_y[0]) == 5
    assert torch.bincount(data.source.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x, _ = next(iter(data.test_batches()))
    assert x[0, 0, 0, 0].item() == pytest.approx(-0.1307 / 0.3081, abs=1e-6)  # a black corner pixel
    assert data.steps_per_epoch == 600


@needs_shared
def test_mnist_loaders_agree(cache):
    dev, tv = (build_data(DataConfig(name="mnist", root=str(SHARED), cache_dir=str(cache), loader=lo),
                          batch_size=128, seed=0, rank=1, world_size=2) for lo in LOADERS)
    assert_same_batches(dev.test_batches(), tv.test_batches())
    first = [b for _, b in zip(range(8), dev.train_batches(0))]
    assert_same_batches(first, [b for _, b in zip(range(8), tv.train_batches(0))])


@needs_shared
def test_cifar_subset_real_values():
    data = build_data(DataConfig(name="cifar10_subset", root=str(SHARED)), batch_size=100, seed=0)
    assert (data.spec.n_train, data.spec.n_test, data.spec.input_shape) == (4000, 1000, (3, 32, 32))
    assert int(data.source.test_y[0]) == 3  # a cat
    assert data.source.test_x[0, :, 0, 0].tolist() == [158, 112, 49]
    x, y = next(iter(data.test_batches()))
    expected = [(v / 255 - m) / s for v, m, s in zip((158, 112, 49), CIFAR_MEAN, CIFAR_STD)]
    assert x[0, :, 0, 0].tolist() == pytest.approx(expected, abs=1e-6) and int(y[0]) == 3


def test_mnist1d_generated_standardised_and_cached(cache):
    cfg = DataConfig(name="mnist1d", cache_dir=str(cache))
    np.random.seed(3)
    before = np.random.get_state()[1].copy()
    data = build_data(cfg, batch_size=100, seed=0)
    assert np.array_equal(np.random.get_state()[1], before)  # make_dataset reseeds NumPy; we restore it
    assert (data.spec.n_train, data.spec.n_test, data.spec.input_shape) == (4000, 1000, (1, 40))
    x = data.source.train_x
    assert abs(x.mean().item()) < 1e-5 and abs(x.std().item() - 1) < 1e-3
    (cached,) = (cache / "mnist1d").glob("*.npz")
    stamp = cached.stat().st_mtime_ns
    again = build_data(cfg, batch_size=100, seed=0)
    assert cached.stat().st_mtime_ns == stamp and torch.equal(again.source.train_x, x)
    tv = build_data(dataclasses.replace(cfg, loader="torchvision"), batch_size=100, seed=0)
    assert_same_batches(data.train_batches(0), tv.train_batches(0))


def test_jitter_zero_is_crop_and_flip_only():
    from suite.data import augment_cifar, crop_flip, draw_augment_params
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    p = draw_augment_params(16, torch.Generator().manual_seed(2), jitter=0.0)
    assert (p.factors == 1).all()
    assert torch.equal(augment_cifar(x, p), crop_flip(x, p.top, p.left, p.flip).float())
    q = draw_augment_params(16, torch.Generator().manual_seed(2))  # the default jitter 0.2
    assert torch.equal(q.top, p.top) and torch.equal(q.flip, p.flip)  # the same random stream
    assert ((q.factors >= 0.8) & (q.factors <= 1.2)).all() and not (q.factors == 1).all()


# --- the validation split -------------------------------------------------------------------------

def _all(data, split):
    n = data.spec.n_train if split == "train" else data.spec.n_val
    return torch.cat([x for x, _ in data._fetch(split, [torch.arange(n)], None)])


@pytest.mark.parametrize("loader", LOADERS)
def test_validation_split_is_fixed_disjoint_and_seen_once(loader, fake_cifar):
    cfg = DataConfig(name="cifar10_subset", root=str(fake_cifar), augment=False, loader=loader, val_size=10)
    whole = build_data(dataclasses.replace(cfg, val_size=0), batch_size=8, seed=1)
    x_all = _all(whole, "train")
    held = validation_indices(200, 10)
    kept = torch.ones(200, dtype=torch.bool)
    kept[held] = False
    for seed in (1, 2):  # the same examples for every seed (and so every method)
        data = build_data(cfg, batch_size=8, seed=seed)
        assert (data.spec.n_train, data.spec.n_val, data.steps_per_epoch) == (190, 10, 23)
        assert torch.equal(torch.cat([x for x, _ in data.val_batches()]), x_all[held])
        assert torch.equal(_all(data, "val"), x_all[held])
        assert torch.equal(_all(data, "train"), x_all[kept])  # the rest, in their order
    with pytest.raises(ConfigError, match="data.val_size: 200 leaves no training example"):
        build_data(dataclasses.replace(cfg, val_size=200), batch_size=8, seed=1)


def test_validation_indices_are_a_seeded_prefix_of_one_permutation():
    a, b = validation_indices(1000, 50), validation_indices(1000, 100)
    assert len(set(a.tolist())) == 50 and a.tolist() == sorted(a.tolist()) and 0 <= int(a.min()) and int(a.max()) < 1000
    assert set(a.tolist()) < set(b.tolist())  # a larger split only adds examples
    assert torch.equal(a, validation_indices(1000, 50))
    assert not torch.equal(a, validation_indices(1001, 50))


def test_a_cached_mnist1d_loads_without_importing_the_package(cache):
    """Issue 25 case 22: the mnist1d package imports matplotlib, scipy and requests (a second of every
    run's start-up, several on a busy machine), only to name its default arguments."""
    import subprocess
    import sys

    from mnist1d.data import get_dataset_args

    from suite.datasets.mnist1d import MNIST1D_ARGS
    assert MNIST1D_ARGS == {k: v for k, v in sorted(vars(get_dataset_args()).items()) if k != "url"}
    build_data(DataConfig(name="mnist1d", cache_dir=str(cache)), batch_size=100, seed=0)  # generates the cache
    probe = ("import sys; from suite.config import DataConfig; from suite.datasets import build_data; "
             f"d = build_data(DataConfig(name='mnist1d', cache_dir={str(cache)!r}), batch_size=100, seed=0); "
             "print(d.spec.n_train, sorted(m for m in ('mnist1d', 'matplotlib', 'scipy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "4000 []"


# --- bad input and faults: one clear line and an exit code, or a recovery ------------------------

def idx_images(n: int, rows: int = 28, cols: int = 28, magic: int = 0x803) -> bytes:
    head = magic.to_bytes(4, "big") + n.to_bytes(4, "big") + rows.to_bytes(4, "big") + cols.to_bytes(4, "big")
    return head + bytes((i * 7) % 256 for i in range(n * rows * cols))


def idx_labels(n: int, magic: int = 0x801) -> bytes:
    return magic.to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(i % 10 for i in range(n))


def fake_mnist(root: Path, n_train: int = 20, n_test: int = 10, **bad: bytes) -> Path:
    """A tiny MNIST/raw of .gz IDX files; `bad` replaces a file's gzip bytes (key: file stem with _)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    files = {"train-images-idx3-ubyte": idx_images(n_train), "train-labels-idx1-ubyte": idx_labels(n_train),
             "t10k-images-idx3-ubyte": idx_images(n_test), "t10k-labels-idx1-ubyte": idx_labels(n_test)}
    for name, data in files.items():
        gz = bad.get(name.replace("-", "_"))
        (raw / f"{name}.gz").write_bytes(gz if gz is not None else gzip.compress(data, mtime=0))
    return raw


GOOD_GZ = gzip.compress(idx_images(20), mtime=0)


DATA_CASES = {
    "truncated .gz": (dict(train_images_idx3_ubyte=GOOD_GZ[:len(GOOD_GZ) // 2]), "train-images-idx3-ubyte.gz",
                      "not a complete gzip file"),
    "empty .gz": (dict(train_images_idx3_ubyte=b""), "train-images-idx3-ubyte.gz", "shorter than its header"),
    "garbage, not gzip": (dict(train_images_idx3_ubyte=b"hello world" * 10), "train-images-idx3-ubyte.gz",
                          "not a complete gzip file"),
    "wrong magic": (dict(train_images_idx3_ubyte=gzip.compress(idx_images(20, magic=0x801))),
                    "train-images-idx3-ubyte.gz", "magic number 0x00000801"),
    "wrong image size": (dict(train_images_idx3_ubyte=gzip.compress(idx_images(20, rows=27))),
                         "train-images-idx3-ubyte.gz", "images are 27x28"),
    "count beyond the data": (dict(t10k_labels_idx1_ubyte=gzip.compress(idx_labels(10)[:-3])),
                              "t10k-labels-idx1-ubyte.gz", "the header says 10 labels"),
    "labels and images disagree": (dict(train_labels_idx1_ubyte=gzip.compress(idx_labels(19))),
                                   "train-labels-idx1-ubyte.gz", "19 labels for 20 images"),
}


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_mnist_file_is_one_line_exit_2(case, tmp_path, capsys):
    bad, name, part = DATA_CASES[case]
    raw = fake_mnist(tmp_path / "data", **bad)
    before = snapshot(tmp_path / "data")
    code, err, _ = cli(capsys, RUN.main, ["--out", str(tmp_path / "runs"), "data.name=mnist", "model.name=lenet300",
                                          f"data.root={tmp_path / 'data'}", f"data.cache_dir={tmp_path / 'cache'}",
                                          "train.batch_size=10", "train.epochs=2"])
    assert code == EXIT_BAD_INPUT
    one_error(err, raw / name, part)
    assert snapshot(tmp_path / "data") == before
    assert not list((tmp_path / "runs").rglob("result.json"))


@pytest.mark.usefixtures("quiet")
def test_bad_uncompressed_mnist_file_is_one_line(tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, data in (("train-images-idx3-ubyte", idx_images(20)), ("train-labels-idx1-ubyte", idx_labels(20)),
                       ("t10k-images-idx3-ubyte", idx_images(10)[:-1]), ("t10k-labels-idx1-ubyte", idx_labels(10))):
        (raw / name).write_bytes(data)
    code, err, _ = cli(capsys, RUN.main, ["--out", str(tmp_path / "runs"), "data.name=mnist", "model.name=lenet300",
                                          f"data.root={tmp_path}", "train.batch_size=10", "train.epochs=2"])
    assert code == EXIT_BAD_INPUT
    one_error(err, raw / "t10k-images-idx3-ubyte", "the header says 10 images", "truncated or corrupt")


@pytest.mark.usefixtures("quiet")
def test_poisoned_cache_is_rebuilt_and_a_good_cache_kept(tmp_path):
    raw = fake_mnist(tmp_path / "data")
    cfg = DataConfig(name="mnist", root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    cached = mnist_root(cfg) / "MNIST" / "raw"
    good = {f: (cached / f).read_bytes() for f in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")}
    stamp = (cached / "t10k-images-idx3-ubyte").stat().st_mtime_ns
    # a kill (or a full disk) left a damaged copy in the cache, with its note intact
    (cached / "train-images-idx3-ubyte").write_bytes(good["train-images-idx3-ubyte"][:100])
    mnist_root(cfg)
    assert (cached / "train-images-idx3-ubyte").read_bytes() == good["train-images-idx3-ubyte"]
    assert (cached / "t10k-images-idx3-ubyte").stat().st_mtime_ns == stamp  # the good copy was reused
    # the source changes (a fixed .gz): the cache follows it
    new = idx_images(30)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(new))
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(30)))
    mnist_root(cfg)
    assert (cached / "train-images-idx3-ubyte").read_bytes() == new
    assert not list(cached.glob(".*.tmp"))


@pytest.mark.usefixtures("quiet")
def test_fixed_gz_after_a_bad_one_is_used(tmp_path):
    bad = fake_mnist(tmp_path / "data", train_images_idx3_ubyte=GOOD_GZ[:50])
    cfg = DataConfig(name="mnist", root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="not a complete gzip file"):
        mnist_root(cfg)
    (bad / "train-images-idx3-ubyte.gz").write_bytes(GOOD_GZ)
    cached = mnist_root(cfg) / "MNIST" / "raw"
    assert (cached / "train-images-idx3-ubyte").read_bytes() == idx_images(20)


def write_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


GOOD_NPZ = dict(x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.arange(4),
                x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.arange(2))


NPZ_CASES = {
    "an array missing": ({k: v for k, v in GOOD_NPZ.items() if k != "y_test"}, "lacks the arrays y_test"),
    "float images": ({**GOOD_NPZ, "x_train": np.zeros((4, 32, 32, 3), np.float32)}, "x_train is float32"),
    "wrong image shape": ({**GOOD_NPZ, "x_test": np.zeros((2, 3, 32, 32), np.uint8)}, "x_test is uint8 (2, 3, 32, 32)"),
    "a label per image missing": ({**GOOD_NPZ, "y_train": np.arange(3)}, "y_train is int64 (3,)"),
    "labels beyond 9": ({**GOOD_NPZ, "y_test": np.array([0, 12])}, "labels outside 0..9"),
}


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz_is_one_error_naming_the_file(case, tmp_path):
    arrays, part = NPZ_CASES[case]
    path = tmp_path / "cifar10-subset" / "cifar10_exact_subset.npz"
    write_npz(path, **arrays)
    with pytest.raises(ConfigError) as e:
        Cifar10Subset().load(DataConfig(name="cifar10_subset", root=str(tmp_path)))
    assert str(e.value).startswith(f"{path}: ") and part in str(e.value) and "\n" not in str(e.value)


@pytest.mark.usefixtures("quiet")
def test_npz_that_is_not_a_zip_exits_2(tmp_path, capsys):
    path = tmp_path / "cifar10-subset" / "cifar10_exact_subset.npz"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 not really")
    code, err, _ = cli(capsys, RUN.main, ["--out", str(tmp_path / "runs"), "data.name=cifar10_subset",
                                          f"data.root={tmp_path}", "model.name=tiny_mlp", "train.epochs=2"])
    assert code == EXIT_BAD_INPUT
    one_error(err, path, "not a readable .npz file")


@pytest.mark.usefixtures("quiet")
def test_corrupt_cifar10_fails_torchvisions_check(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (folder / name).write_bytes(b"\x80\x04garbage")
    code, err, _ = cli(capsys, RUN.main, ["--out", str(tmp_path / "runs"), "data.name=cifar10",
                                          f"data.root={tmp_path}", "model.name=tiny_mlp", "train.epochs=2"])
    assert code == EXIT_BAD_INPUT
    one_error(err, folder, "incomplete or corrupt")

"""MNIST (LeCun et al. 1998): 28x28 grey digits, 60,000 training and 10,000 test images, read by
torchvision from the IDX files (or their .gz, unpacked into the cache and checked)."""
from __future__ import annotations

import gzip
import json
import shutil
import zlib
from pathlib import Path
from typing import Callable

from suite.config import DataConfig
from suite.data import Source, cache_dir, image_source
from suite.datasets.base import Dataset, root_of
from suite.errors import ConfigError
from suite.results import atomic_write, atomic_write_text

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # training-set pixel mean/std on [0, 1]

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
    atomic_write_text(note, json.dumps(key))


def mnist_root(cfg: DataConfig) -> Path:
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


class Mnist(Dataset):
    """The four IDX files under data.root/MNIST/raw (or torchvision's download, data.download=true)."""
    name = "mnist"
    mean, std = MNIST_MEAN, MNIST_STD

    def files_problem(self, cfg: DataConfig) -> str | None:
        raw = root_of(cfg) / "MNIST" / "raw"
        if cfg.download or all((raw / f).is_file() for f in MNIST_FILES) or \
                all((raw / f"{f}.gz").is_file() for f in MNIST_FILES):
            return None
        return (f"MNIST not found: no {MNIST_FILES[0]}[.gz] in {raw} "
                f"(set data.root to the folder holding MNIST/raw, or data.download=true)")

    def known(self, cfg: DataConfig):
        return (1, MNIST_SIDE, MNIST_SIDE), 10, 60_000

    def load(self, cfg: DataConfig) -> Source:
        from torchvision.datasets import MNIST

        root = str(mnist_root(cfg))
        train = MNIST(root, train=True, download=cfg.download)
        test = MNIST(root, train=False, download=cfg.download)
        return image_source("mnist", train, test, train.data, train.targets, test.data, test.targets,
                            MNIST_MEAN, MNIST_STD, augmentable=False)

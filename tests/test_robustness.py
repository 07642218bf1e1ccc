"""Bad inputs and faults (issue 10): each is one clear line and an exit code, or a recovery; nothing
already on disk is lost or mixed. Most cases fail before any training; the rest use TINY runs.

The CLI is called in this process (`main(argv)`, the same function `python suite/run.py` calls), and
as a subprocess only where a signal must land in a real run."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT, TINY, env, metrics, result, tensors
from launch import sweep as S
from suite import report as R
from suite import run as RUN
from suite.config import ConfigError, DataConfig, load_config, run_dir
from suite.data import _mnist_root, load_cifar10_subset
from suite.results import (EXIT_BAD_INPUT, EXIT_FAILED, RunFolder, code_version, previous_checkpoint,
                           read_metrics)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess runs (OMP_NUM_THREADS=1): bitwise comparisons
    yield
    torch.set_num_threads(threads)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with the sha256 of its bytes: to show nothing on disk changed."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def cli(capsys, main, argv: list[str]) -> tuple[int, list[str], str]:
    """(exit code, stderr lines, stdout) of an in-process CLI call."""
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def one_error(lines: list[str], *parts: str) -> str:
    """stderr is exactly one `error: ...` line, and it names each of `parts`."""
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    for part in parts:
        assert str(part) in lines[0], (part, lines[0])
    return lines[0]


# --- strict YAML --------------------------------------------------------------------------------

YAML_CASES = {
    "duplicate key in a section": ("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n",
                                   ["duplicate key 'lr' on line 4 (first on line 2)"]),
    "duplicate top-level key": ("seed: 1\nmethod: dense\nseed: 2\n", ["duplicate key 'seed' on line 3"]),
    "duplicate key three deep": ("a:\n  b:\n    c: 1\n    c: 1\n", ["duplicate key 'c' on line 4"]),
    "empty file": ("", ["is empty"]),
    "only comments": ("# nothing here\n", ["is empty"]),
    "a list, not a mapping": ("- 1\n- 2\n", ["expected a mapping"]),
    "a scalar, not a mapping": ("42\n", ["expected a mapping"]),
    "broken YAML": ("train: [1, 2\n", ["not valid YAML"]),
}


@pytest.mark.parametrize("case", YAML_CASES)
def test_bad_config_file_is_one_line_exit_2(case, tmp_path, capsys):
    text, parts = YAML_CASES[case]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, err, _ = cli(capsys, RUN.main, ["--config", str(path), "--out", str(tmp_path / "runs"), *TINY])
    assert code == EXIT_BAD_INPUT
    one_error(err, path, *parts)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("payload,part", [(bytes(range(256)) * 4, "a binary file"),
                                          (b"train:\n  lr: \xe9\xe9\n", "not UTF-8 text")])
def test_binary_or_non_text_config_is_one_line(payload, part, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes(payload)
    code, err, _ = cli(capsys, RUN.main, ["--config", str(path), "--out", str(tmp_path / "runs")])
    assert code == EXIT_BAD_INPUT
    one_error(err, path, part)


def test_config_that_is_a_folder(tmp_path, capsys):
    code, err, _ = cli(capsys, RUN.main, ["--config", str(tmp_path), "--out", str(tmp_path / "runs")])
    assert code == EXIT_BAD_INPUT
    one_error(err, tmp_path, "not a file")


@pytest.mark.parametrize("text,part", [("", "sweep file is empty"),
                                       ("base: configs/quickstart.yaml\naxes:\n  seed: [1]\n  seed: [2]\n",
                                        "duplicate key 'seed' on line 4")])
def test_bad_sweep_file_is_one_line(text, part, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    code, err, _ = cli(capsys, S.main, [str(path), "--out", str(tmp_path / "runs"), "--dry-run"])
    assert code == EXIT_BAD_INPUT
    one_error(err, path, part)


def test_repo_configs_have_no_duplicate_keys():
    from suite.config import read_yaml
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        assert read_yaml(path) is not None, path


# --- the command line ---------------------------------------------------------------------------

def test_overrides_anywhere_on_the_line(tmp_path, capsys):
    out = str(tmp_path / "runs")
    expected = run_dir(load_config(None, [*TINY, "prune.t_end=2"]), out)
    for argv in (["--print-dir", "--out", out, *TINY, "prune.t_end=2"],
                 [TINY[0], "--out", out, *TINY[1:], "--print-dir", "prune.t_end=2"],
                 [*TINY, "--print-dir", "prune.t_end=2", "--out", out]):
        code, err, stdout = cli(capsys, RUN.main, argv)
        assert (code, err, stdout.strip()) == (0, [], str(expected)), argv


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("keep me\n")
    return path


@pytest.mark.parametrize("where", ["is a file", "under a file"])
def test_run_out_that_is_a_file_or_under_one(where, tmp_path, capsys):
    f = _a_file(tmp_path)
    out = f if where == "is a file" else f / "runs"
    code, err, _ = cli(capsys, RUN.main, ["--out", str(out), *TINY])
    assert code == EXIT_BAD_INPUT
    one_error(err, "--out", out, "is a file")
    assert f.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("where", ["is a file", "under a file"])
def test_sweep_out_that_is_a_file_or_under_one(where, tmp_path, capsys):
    f = _a_file(tmp_path)
    out = f if where == "is a file" else f / "deeper" / "runs"
    code, err, _ = cli(capsys, S.main, ["configs/sweeps/quickstart.yaml", "--out", str(out)])
    assert code == EXIT_BAD_INPUT
    one_error(err, "--out", out, "is a file")
    assert f.read_text() == "keep me\n"


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write: chmod 555, or as root (who writes anywhere) a read-only tmpfs."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("root, and no read-only mount allowed here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.parametrize("main,argv", [(RUN.main, TINY), (S.main, ["configs/sweeps/quickstart.yaml"])],
                         ids=["run", "sweep"])
def test_out_not_writable(main, argv, read_only_folder, capsys):
    code, err, _ = cli(capsys, main, ["--out", str(read_only_folder / "runs"), *argv])
    assert code == EXIT_BAD_INPUT
    one_error(err, f"--out {read_only_folder / 'runs'}: {read_only_folder} is not writable")


def test_fp16_on_cpu_is_an_error_not_a_silent_fp32(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "suite" / "run.py"), "--out", str(tmp_path / "runs"),
                           *TINY, "train.precision=fp16"], capture_output=True, text=True, cwd=ROOT,
                          env=env(CUDA_VISIBLE_DEVICES=""), timeout=300)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    one_error(proc.stderr.splitlines(), "train.precision=fp16", "needs a CUDA GPU", "cpu")
    assert not (tmp_path / "runs").exists()


# --- data files ---------------------------------------------------------------------------------

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


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_mnist_file_is_one_line_exit_2(case, tmp_path, capsys):
    bad, name, part = DATA_CASES[case]
    raw = fake_mnist(tmp_path / "data", **bad)
    before = snapshot(tmp_path / "data")
    code, err, _ = cli(capsys, RUN.main, ["--out", str(tmp_path / "runs"), "data.name=mnist", "model.name=lenet300",
                                          f"data.root={tmp_path / 'data'}", f"data.cache_dir={tmp_path / 'cache'}",
                                          "train.batch_size=10", "train.epochs=1"])
    assert code == EXIT_BAD_INPUT
    one_error(err, raw / name, part)
    assert snapshot(tmp_path / "data") == before
    assert not list((tmp_path / "runs").rglob("result.json"))


def test_bad_uncompressed_mnist_file_is_one_line(tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, data in (("train-images-idx3-ubyte", idx_images(20)), ("train-labels-idx1-ubyte", idx_labels(20)),
                       ("t10k-images-idx3-ubyte", idx_images(10)[:-1]), ("t10k-labels-idx1-ubyte", idx_labels(10))):
        (raw / name).write_bytes(data)
    code, err, _ = cli(capsys, RUN.main, ["--out", str(tmp_path / "runs"), "data.name=mnist", "model.name=lenet300",
                                          f"data.root={tmp_path}", "train.batch_size=10", "train.epochs=1"])
    assert code == EXIT_BAD_INPUT
    one_error(err, raw / "t10k-images-idx3-ubyte", "the header says 10 images", "truncated or corrupt")


def test_poisoned_cache_is_rebuilt_and_a_good_cache_kept(tmp_path):
    raw = fake_mnist(tmp_path / "data")
    cfg = DataConfig(name="mnist", root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    cached = _mnist_root(cfg) / "MNIST" / "raw"
    good = {f: (cached / f).read_bytes() for f in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")}
    stamp = (cached / "t10k-images-idx3-ubyte").stat().st_mtime_ns
    # a kill (or a full disk) left a damaged copy in the cache, with its note intact
    (cached / "train-images-idx3-ubyte").write_bytes(good["train-images-idx3-ubyte"][:100])
    _mnist_root(cfg)
    assert (cached / "train-images-idx3-ubyte").read_bytes() == good["train-images-idx3-ubyte"]
    assert (cached / "t10k-images-idx3-ubyte").stat().st_mtime_ns == stamp  # the good copy was reused
    # the source changes (a fixed .gz): the cache follows it
    new = idx_images(30)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(new))
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(30)))
    _mnist_root(cfg)
    assert (cached / "train-images-idx3-ubyte").read_bytes() == new
    assert not list(cached.glob(".*.tmp"))


def test_fixed_gz_after_a_bad_one_is_used(tmp_path):
    bad = fake_mnist(tmp_path / "data", train_images_idx3_ubyte=GOOD_GZ[:50])
    cfg = DataConfig(name="mnist", root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="not a complete gzip file"):
        _mnist_root(cfg)
    (bad / "train-images-idx3-ubyte.gz").write_bytes(GOOD_GZ)
    cached = _mnist_root(cfg) / "MNIST" / "raw"
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


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz_is_one_error_naming_the_file(case, tmp_path):
    arrays, part = NPZ_CASES[case]
    path = tmp_path / "cifar10-subset" / "cifar10_exact_subset.npz"
    write_npz(path, **arrays)
    with pytest.raises(ConfigError) as e:
        load_cifar10_subset(DataConfig(name="cifar10_subset", root=str(tmp_path)))
    assert str(e.value).startswith(f"{path}: ") and part in str(e.value) and "\n" not in str(e.value)


def test_npz_that_is_not_a_zip_exits_2(tmp_path, capsys):
    path = tmp_path / "cifar10-subset" / "cifar10_exact_subset.npz"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 not really")
    code, err, _ = cli(capsys, RUN.main, ["--out", str(tmp_path / "runs"), "data.name=cifar10_subset",
                                          f"data.root={tmp_path}", "model.name=tiny_mlp", "train.epochs=1"])
    assert code == EXIT_BAD_INPUT
    one_error(err, path, "not a readable .npz file")


def test_corrupt_cifar10_fails_torchvisions_check(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (folder / name).write_bytes(b"\x80\x04garbage")
    code, err, _ = cli(capsys, RUN.main, ["--out", str(tmp_path / "runs"), "data.name=cifar10",
                                          f"data.root={tmp_path}", "model.name=tiny_mlp", "train.epochs=1"])
    assert code == EXIT_BAD_INPUT
    one_error(err, folder, "incomplete or corrupt")


# --- run folders: one owner, nothing mixed or lost ----------------------------------------------

LONG = [*TINY[:2], "train.epochs=40", *TINY[3:]]  # long enough to signal mid-run


def run_main(capsys, out: Path, *extra: str) -> tuple[int, list[str], Path]:
    code, err, stdout = cli(capsys, RUN.main, ["--no-progress", "--out", str(out), *LONG, *extra])
    return code, err, Path(stdout.strip().splitlines()[-1]) if stdout.strip() else None


def interrupt(out: Path, after_epochs: int, *extra: str) -> Path:
    """Start the LONG run as a subprocess, SIGTERM it once `after_epochs` epochs are checkpointed."""
    cmd = [sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out), *LONG, *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        found = [p.parent for p in out.rglob("checkpoint.pt") if ".old-" not in p.parent.name]
        if found and len(read_metrics(found[0] / "metrics.jsonl")) >= after_epochs:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    (folder,) = {p.parent for p in out.rglob("checkpoint.pt")}
    assert not (folder / "result.json").exists(), "the run finished before the signal"
    return folder


def strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("epoch_time_s", "images_per_s")} for row in rows]


def same_run(a: Path, b: Path) -> None:
    """Two run folders hold bitwise the same training."""
    ra, rb = result(a), result(b)
    for key in ("final_test_accuracy", "final_test_loss", "train_flops", "achieved_sparsity",
                "prunable_remaining", "layer_sparsity", "experiment"):
        assert ra[key] == rb[key], key
    for file in ("mask.safetensors", "model.safetensors"):
        ta, tb = tensors(a / file), tensors(b / file)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), file
    assert strip(metrics(a)) == strip(metrics(b))
    assert [r["epoch"] for r in metrics(b)] == list(range(1, 41))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The LONG run, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("straight")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert RUN.main(["--no-progress", "--out", str(out), *LONG]) == 0
    finally:
        mp.undo()
        torch.set_num_threads(threads)  # later test modules run as they would without this one
    (folder,) = {p.parent for p in out.rglob("result.json")}
    return folder


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The LONG run stopped by SIGTERM after at least 3 epochs: checkpoint.pt and checkpoint.prev.pt."""
    folder = interrupt(tmp_path_factory.mktemp("stopped"), 3)
    assert previous_checkpoint(folder / "checkpoint.pt").is_file()
    return folder


def copy_run(folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a run folder under a fresh runs folder (same experiment/seed path)."""
    out = tmp_path / "runs"
    target = out / folder.parent.name / folder.name
    shutil.copytree(folder, target)
    return out, target


def epoch_of(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["epoch"])


@pytest.mark.parametrize("cut", ["empty", 64, "half", "last byte"])
def test_truncated_checkpoint_falls_back_to_the_previous_one_bitwise(cut, straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    ckpt = folder / "checkpoint.pt"
    prev_epoch = epoch_of(previous_checkpoint(ckpt))
    data = ckpt.read_bytes()
    keep = {"empty": 0, 64: 64, "half": len(data) // 2, "last byte": len(data) - 1}[cut]
    ckpt.write_bytes(data[:keep])
    code, err, done = run_main(capsys, out)
    assert code == 0, err
    (warning,) = [line for line in err if line.startswith("warning:")]
    assert "checkpoint.pt unreadable" in warning and f"resuming from the previous checkpoint (round 0 epoch " \
        f"{prev_epoch})" in warning and str(folder) in warning
    assert done == folder
    same_run(straight, folder)
    assert not ckpt.exists() and not previous_checkpoint(ckpt).exists()


@pytest.mark.parametrize("damage,part", [("wrong keys", "lacks round"), ("other experiment", "belongs to experiment"),
                                         ("other seed", "belongs to seed"), ("other model", "its model has other tensors")])
def test_foreign_checkpoint_falls_back_to_the_previous_one(damage, part, straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    ckpt = folder / "checkpoint.pt"
    saved = torch.load(ckpt, weights_only=True)
    if damage == "wrong keys":
        saved = {"weights": saved["model"]}
    elif damage == "other experiment":
        saved["experiment"] = "0123456789ab"
    elif damage == "other seed":
        saved["seed"] = 7
    else:
        saved["model"] = {"fc.weight": torch.zeros(2, 2)}
    torch.save(saved, ckpt)
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    (warning,) = [line for line in err if line.startswith("warning:")]
    assert part in warning and "resuming from the previous checkpoint" in warning
    same_run(straight, folder)


def test_two_process_job_falls_back_to_the_previous_checkpoint(stopped, tmp_path):
    """Rank 0 decides which checkpoint counts (deleting the damaged one) before rank 1 reads: both
    resume from the same one (the same config is the same experiment on 1 or 2 processes)."""
    from helpers import launch_2proc
    out, folder = copy_run(stopped, tmp_path)
    prev_epoch = epoch_of(previous_checkpoint(folder / "checkpoint.pt"))
    (folder / "checkpoint.pt").write_bytes(b"")
    proc = launch_2proc([str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out), *LONG])
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"resuming from the previous checkpoint (round 0 epoch {prev_epoch})" in warnings[0]
    r = result(folder)
    assert r["world_size"] == 2 and [m["epoch"] for m in metrics(folder)] == list(range(1, 41))
    assert r["total_epochs_trained"] == 40


def test_both_checkpoints_damaged_starts_over(straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    (folder / "checkpoint.pt").write_bytes(b"")
    previous_checkpoint(folder / "checkpoint.pt").write_bytes(b"garbage")
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    (warning,) = [line for line in err if line.startswith("warning:")]
    assert "checkpoint.pt unreadable" in warning and "checkpoint.prev.pt unreadable" in warning
    assert f"no usable checkpoint, starting {folder} over" in warning
    same_run(straight, folder)
    assert result(folder)["total_epochs_trained"] == 40


def test_only_the_previous_checkpoint_left_resumes_from_it(straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    (folder / "checkpoint.pt").unlink()  # a kill between the rotation and the new file's rename
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    assert any(line.startswith("resuming") for line in err) and not any("warning" in line for line in err)
    same_run(straight, folder)


def test_kill_between_the_last_checkpoint_and_metrics_loses_no_epoch(straight, stopped, tmp_path, capsys,
                                                                     monkeypatch):
    """The last epoch's checkpoint is on disk, its metrics.jsonl write never happens (a kill lands
    there: injected, since a real signal cannot be placed between two writes)."""
    from suite import trainer
    out, folder = copy_run(stopped, tmp_path)
    real = trainer.write_jsonl

    def killed_at_the_last_epoch(path, records):
        if Path(path).name == "metrics.jsonl" and len(records) == 40:
            raise trainer.Interrupted()
        real(path, records)
    monkeypatch.setattr(trainer, "write_jsonl", killed_at_the_last_epoch)
    assert run_main(capsys, out)[0] == 75
    assert epoch_of(folder / "checkpoint.pt") == 40 and len(read_metrics(folder / "metrics.jsonl")) == 39
    monkeypatch.setattr(trainer, "write_jsonl", real)
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    assert "resuming" in err[0] and "epoch 40" in err[0]
    same_run(straight, folder)  # all 40 epochs in metrics.jsonl


def test_orphan_temp_files_removed_on_next_start(straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    orphans = [folder / ".checkpoint.pt.abc123.tmp", folder / ".metrics.jsonl.x.tmp"]
    for p in orphans:
        p.write_bytes(b"half a file")
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    assert not any(p.exists() for p in orphans)
    same_run(straight, folder)


def test_stale_checkpoint_after_result_is_cleaned_and_result_untouched(straight, stopped, tmp_path, capsys):
    out, folder = copy_run(straight, tmp_path)
    shutil.copy(stopped / "checkpoint.pt", folder / "checkpoint.pt")  # a kill after result.json
    before = snapshot(folder)
    code, err, _ = run_main(capsys, out)
    assert code == 0 and err == [f"already finished (use --force to run again): {folder}"]
    del before["checkpoint.pt"]
    assert snapshot(folder) == before


@pytest.mark.parametrize("damage", ["not JSON", "truncated", "a field missing", "NaN accuracy", "status failed",
                                    "model.safetensors missing"])
def test_corrupt_result_is_not_finished_the_rerun_repairs_it(damage, straight, tmp_path, capsys):
    out, folder = copy_run(straight, tmp_path)
    path = folder / "result.json"
    text = path.read_text()
    data = json.loads(text)
    if damage == "not JSON":
        path.write_text("{{{")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "a field missing":
        del data["final_test_accuracy"]
        path.write_text(json.dumps(data))
    elif damage == "NaN accuracy":
        path.write_text(text.replace(f'"final_test_accuracy": {data["final_test_accuracy"]}',
                                     '"final_test_accuracy": NaN'))
    elif damage == "status failed":
        path.write_text(json.dumps({**data, "status": "failed"}))
    else:
        (folder / "model.safetensors").unlink()
    damaged = snapshot(folder)
    status = RunFolder(folder).status()
    assert status.state == "invalid" and str(folder) in status.detail
    assert S.run_status(folder).state == "invalid"
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    (moved,) = folder.parent.glob("seed_42.old-*")
    assert [line for line in err if "moved" in line] == [f"moved the previous files of {folder} to {moved}"]
    assert {k: v for k, v in snapshot(moved).items() if k != ".lock"} == \
        {k: v for k, v in damaged.items() if k != ".lock"}  # kept as it was, beside the new run
    same_run(straight, folder)


def test_force_moves_the_old_run_aside_before_starting(straight, tmp_path):
    out, folder = copy_run(straight, tmp_path)
    before = snapshot(folder)
    stopped_force = interrupt(out, 1, "--force")  # --force, then killed
    assert stopped_force == folder
    (moved,) = folder.parent.glob("seed_42.old-*")
    assert {k: v for k, v in snapshot(moved).items() if k != ".lock"} == \
        {k: v for k, v in before.items() if k != ".lock"}
    assert not (folder / "result.json").exists()  # nothing of the old run mixed into the new one
    assert RunFolder(folder).status().state == "partial"
    # the report reads neither the half-done run nor the one moved aside
    runs, skipped = R.scan_runs(out)
    assert runs == [] and [s.status for s in skipped] == ["unfinished"]


def test_sweep_does_not_count_an_invalid_result(straight, tmp_path, capsys):
    out, folder = copy_run(straight, tmp_path)
    (folder / "result.json").write_text("{")
    status = S.run_status(folder)
    assert status.state == "invalid" and f"{folder / 'result.json'}: unreadable" in status.detail


def test_run_folder_reads_torn_and_unreadable_files(tmp_path):
    folder = RunFolder(tmp_path / "seed_1")
    folder.path.mkdir()
    assert folder.status().state == "pending"
    # a torn last line, a repeated epoch (a resumed run), a line that is not a record
    (folder.path / "metrics.jsonl").write_text('{"epoch": 1, "a": 1}\n[1]\n{"epoch": 1, "a": 2}\n{"epoch": 2, "a"')
    assert folder.read_metrics() == [{"epoch": 1, "a": 2}]
    assert folder.status() == type(folder.status())("partial", "stopped after round 0 epoch 1")
    (folder.path / "failed.json").write_bytes(b"\xff\xfe")
    assert folder.failure_reason() == "failed.json is unreadable" and folder.status().state == "failed"
    (folder.path / "failed.json").unlink()
    (folder.path / "checkpoint.prev.pt").write_bytes(b"")
    (folder.path / "metrics.jsonl").unlink()
    assert folder.status() == type(folder.status())("partial", "stopped after a checkpoint")


def test_two_moves_aside_in_one_second_keep_both(tmp_path):
    folder = RunFolder(tmp_path / "seed_1")
    folder.path.mkdir()
    (folder.path / ".lock").write_text("")
    assert folder.move_aside() is None  # only the lock: nothing to move
    (folder.path / "result.json").write_text("1")
    first = folder.move_aside()
    (folder.path / "result.json").write_text("2")
    second = folder.move_aside()
    assert first != second and (first / "result.json").read_text() == "1" and (second / "result.json").read_text() == "2"
    assert sorted(p.name for p in folder.path.iterdir()) == [".lock"]


def test_a_second_sweeper_does_not_count_anothers_run_as_done(straight, tmp_path):
    """Its run.py exited 3 (locked); by the time it looks, the other sweeper's run has finished."""
    _, folder = copy_run(straight, tmp_path)
    started = time.time()
    assert S.classify(3, folder, ["error: run is locked by another process"], started, False) == \
        ("locked", "running elsewhere")
    assert S.classify(0, folder, [], started, False) == ("done", "")


# --- the report ---------------------------------------------------------------------------------

def test_report_lists_a_nan_accuracy_as_invalid_with_its_path(straight, tmp_path):
    out = tmp_path / "runs"
    for seed in (1, 2, 3):
        target = out / straight.parent.name / f"seed_{seed}"
        shutil.copytree(straight, target)
        data = json.loads((target / "result.json").read_text())
        (target / "result.json").write_text(json.dumps({**data, "seed": seed}))
    bad = out / straight.parent.name / "seed_3" / "result.json"
    bad.write_text(bad.read_text().replace('"final_test_accuracy": ', '"final_test_accuracy": NaN, "x": '))
    runs, skipped = R.scan_runs(out)
    assert sorted(r.seed for r in runs) == [1, 2]
    (s,) = skipped
    assert (s.status, s.seed) == ("invalid", 3)
    assert s.reason == f"{straight.parent.name}/seed_3/result.json: final_test_accuracy is nan, not a finite number"


def test_report_warns_when_seeds_come_from_different_code(straight, tmp_path, capsys):
    out = tmp_path / "runs"
    for seed, commit in ((1, "a" * 40), (2, "b" * 40)):
        target = out / straight.parent.name / f"seed_{seed}"
        shutil.copytree(straight, target)
        data = json.loads((target / "result.json").read_text())
        data.update(seed=seed, code={"commit": commit, "dirty": False, "diff_sha256": None})
        (target / "result.json").write_text(json.dumps(data))
    code, err, _ = cli(capsys, R.main, [str(out), "--format", "csv"])
    assert code == 0
    warnings = [line for line in err if line.startswith("warning:")]
    assert len(warnings) == 1 and "different code" in warnings[0] and straight.parent.name in warnings[0]
    assert "aaaaaaaaaaaa" in warnings[0] and "bbbbbbbbbbbb" in warnings[0]


def test_result_records_the_code(straight):
    code = result(straight)["code"]
    assert set(code) == {"commit", "dirty", "diff_sha256"}
    if (ROOT / ".git").exists():
        assert len(code["commit"]) == 40 and isinstance(code["dirty"], bool)
        assert (code["diff_sha256"] is None) == (not code["dirty"])


def test_no_git_checkout_is_not_an_error(tmp_path):
    assert code_version(tmp_path) == {"commit": None, "dirty": None, "diff_sha256": None}


# --- no traceback by accident -------------------------------------------------------------------

def test_unexpected_error_in_run_is_one_line_and_a_log(tmp_path, capsys):
    out = tmp_path / "runs"
    folder = run_dir(load_config(None, TINY), out)
    (folder / "config.json").mkdir(parents=True)  # config.json cannot be written: an OSError nobody expects
    code, err, _ = cli(capsys, RUN.main, ["--no-progress", "--out", str(out), *TINY])
    assert code == EXIT_FAILED
    line = one_error(err, "unexpected IsADirectoryError", f"(details in {folder / 'error.log'})")
    assert line.endswith(")")
    assert "Traceback (most recent call last)" in (folder / "error.log").read_text()
    code, err, _ = cli(capsys, RUN.main, ["--no-progress", "--out", str(out), "--debug", *TINY])
    assert code == EXIT_FAILED and any("Traceback" in e for e in err) and err[-1].startswith("error: unexpected")


def test_unexpected_error_in_sweep_is_one_line(tmp_path, capsys):
    out = tmp_path / "runs"
    (out / "sweeps").mkdir(parents=True)
    (out / "sweeps" / "quickstart").write_text("a file where the sweep's log folder goes")
    code, err, _ = cli(capsys, S.main, ["configs/sweeps/quickstart.yaml", "--out", str(out)])
    assert code == EXIT_FAILED
    line = one_error(err, "unexpected FileExistsError", "details in")
    log = Path(line.rsplit("(details in ", 1)[1].rstrip(")"))  # its own folder is the culprit: a temp file
    assert "Traceback (most recent call last)" in log.read_text()
    log.unlink()


def test_unexpected_error_in_report_is_one_line(straight, tmp_path, capsys):
    out, _ = copy_run(straight, tmp_path)
    target = tmp_path / "report.md"
    target.mkdir()  # --out names a folder
    code, err, _ = cli(capsys, R.main, [str(out), "--out", str(target)])
    assert code == EXIT_FAILED
    one_error(err, "unexpected IsADirectoryError", f"(details in {out / 'error.log'})")
    assert "Traceback (most recent call last)" in (out / "error.log").read_text()

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

from helpers import ROOT, TINY, env, metrics, result, run_cli, tensors
import launch as S
from suite import report as R
from suite import run as RUN
from suite.config import ConfigError, DataConfig, load_config, run_dir
from suite.datasets.cifar10_subset import Cifar10Subset
from suite.datasets.mnist import _mnist_root
from suite.exits import EXIT_BAD_INPUT, EXIT_FAILED
from suite.provenance import code_version
from suite.results import RunFolder, previous_checkpoint, read_metrics


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
        Cifar10Subset().load(DataConfig(name="cifar10_subset", root=str(tmp_path)))
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
    resume from the same one. The process count is in the hash, so the stopped 1-process run stands in
    for a stopped 2-process run: moved to that run's folder and its checkpoints relabelled."""
    from helpers import launch_2proc
    from suite.config import experiment_hash, load_config, run_dir, to_dict, with_processes
    out, one = copy_run(stopped, tmp_path)
    cfg = with_processes(load_config(None, LONG), 2)
    folder = run_dir(cfg, out)
    folder.parent.mkdir(parents=True)
    one.rename(folder)
    (folder / "config.json").write_text(json.dumps(to_dict(cfg)))
    for ckpt in (folder / "checkpoint.pt", previous_checkpoint(folder / "checkpoint.pt")):
        saved = torch.load(ckpt, weights_only=True)
        torch.save({**saved, "experiment": experiment_hash(cfg)}, ckpt)
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


# --- issue 17: a run folder proves what it holds --------------------------------------------------

def _damage_result(folder: Path, damage: str) -> Path:
    """Apply one damage to a finished run folder; the folder whose result must no longer count."""
    path = folder / "result.json"
    data = json.loads(path.read_text())
    if damage == "achieved sparsity off":  # one weight more alive than the exact count says
        data["prunable_remaining"] += 1
        data["achieved_sparsity"] = 1 - data["prunable_remaining"] / data["prunable_total"]
        path.write_text(json.dumps(data))
    elif damage.endswith(" missing"):
        (folder / damage.split()[0]).unlink()
    elif damage == "mask header damaged":  # a header length of 2**60 bytes: reading it was a MemoryError
        raw = (folder / "mask.safetensors").read_bytes()
        (folder / "mask.safetensors").write_bytes((2 ** 60).to_bytes(8, "little") + raw[8:])
    elif damage == "copied to another seed":  # cp -a seed_42 seed_43
        copy = folder.parent / "seed_43"
        shutil.copytree(folder, copy, symlinks=True)
        shutil.rmtree(folder)
        return copy
    return folder


RESULT_DAMAGE = {
    "achieved sparsity off": "result.json: achieved sparsity 0.899795 (6133 of 6816 weights pruned) is not its "
                             "target 0.900000 (6134 pruned by the exact-count rule)",
    "mask.safetensors missing": "result.json: no mask.safetensors beside it",
    "model.safetensors missing": "result.json: no model.safetensors beside it",
    "metrics.jsonl missing": "result.json: no metrics.jsonl beside it",
    "mask header damaged": "result.json: mask.safetensors is damaged (header length 1152921504606846976 in a file "
                           "of ",
    "copied to another seed": "result.json: holds seed 42's result, not this folder's seed 43 (a copied folder? "
                              "the same command trains it)",
}


@pytest.mark.parametrize("damage", RESULT_DAMAGE)
def test_a_result_counts_only_with_what_its_folder_holds(damage, straight, tmp_path):
    """RunFolder (run.py and the sweep) and the report read one rule: none counts the result."""
    out, folder = copy_run(straight, tmp_path)
    folder = _damage_result(folder, damage)
    status = RunFolder(folder).status()
    assert status.state == "invalid" and status.detail.startswith(f"{folder}/{RESULT_DAMAGE[damage]}"), status
    assert S.run_status(folder).state == "invalid"  # the sweep runs it (seed 43 trains), never "done"
    runs, skipped = R.scan_runs(out)
    assert runs == [] and [(s.status, s.path) for s in skipped] == \
        [("invalid", folder.relative_to(out).as_posix())]
    assert RESULT_DAMAGE[damage] in skipped[0].reason


def test_report_cli_does_not_count_a_result_its_folder_disowns(straight, tmp_path):
    """python -m suite.report, as a user runs it: a copied seed and a result without its weights are
    listed as invalid; only the true result is counted."""
    out, folder = copy_run(straight, tmp_path)
    shutil.copytree(folder, folder.parent / "seed_43")
    shutil.copytree(folder, folder.parent / "seed_44")
    (folder.parent / "seed_44" / "model.safetensors").unlink()
    proc = subprocess.run([sys.executable, "-m", "suite.report", str(out), "--format", "json"], capture_output=True,
                          text=True, cwd=ROOT, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    tables = json.loads(proc.stdout)
    text = json.dumps(tables)
    assert "seed 42's result, not this folder's seed 43" in text and "no model.safetensors beside it" in text
    (row,) = [r for r in tables["summary"]]
    assert row["n"] == 1


def test_moved_aside_means_a_seed_folder_only():
    from suite.results import moved_aside
    assert moved_aside("seed_42.old-20261203-171500") and moved_aside("seed_42.old-20261203-171500-2")
    assert not moved_aside("runs.old-2024") and not moved_aside("study.old-20261203-171500")


def test_results_under_a_folder_named_old_are_counted(straight, tmp_path):
    out = tmp_path / "study.old-20250101-000000"  # a user's folder name: not a run --force moved aside
    copy_run(straight, out)
    runs, skipped = R.scan_runs(out)
    assert [r.seed for r in runs] == [42] and skipped == []


def test_a_force_killed_inside_the_move_aside_never_leaves_a_finished_folder(straight, tmp_path):
    """move_aside moves result.json first: after a kill at any point of the move, the folder is either
    the whole old run or not finished, and the report counts nothing twice."""
    from suite.results import aside_order
    entries = sorted(p.name for p in straight.iterdir() if p.name != ".lock")
    order = [p.name for p in aside_order([straight / n for n in entries])]
    assert order[0] == "result.json"
    for k in range(1, len(order)):
        out, folder = copy_run(straight, tmp_path / f"k{k}")
        half = folder.parent / "seed_42.old-20261203-120000"
        half.mkdir()
        for name in order[:k]:  # the kill came after k moves
            shutil.move(str(folder / name), str(half / name))
        assert not RunFolder(folder).finished(), k
        runs, _ = R.scan_runs(out)
        assert runs == [], k


@pytest.mark.parametrize("damage,part,fallback", [
    ("float 0.5 mask in both", "its mask fc1.weight is torch.float32, not bool", "no usable checkpoint, starting"),
    ("one weight revived", "its mask keeps", "resuming from the previous checkpoint"),
])
def test_checkpoint_mask_must_be_bool_with_the_recorded_count(damage, part, fallback, straight, stopped, tmp_path,
                                                              capsys):
    out, folder = copy_run(stopped, tmp_path)
    paths = [folder / "checkpoint.pt", previous_checkpoint(folder / "checkpoint.pt")]
    for path in paths if damage.endswith("in both") else paths[:1]:
        saved = torch.load(path, weights_only=True)
        if damage.startswith("float"):
            saved["mask"] = {n: torch.full(m.shape, 0.5) for n, m in saved["mask"].items()}
        else:
            m = saved["mask"]["fc1.weight"].clone()
            m.view(-1)[torch.nonzero(~m.view(-1))[0]] = True
            saved["mask"]["fc1.weight"] = m
        torch.save(saved, path)
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    (warning,) = [line for line in err if line.startswith("warning:")]
    assert part in warning and fallback in warning and str(folder) in warning
    same_run(straight, folder)  # a pruned run at its exact count, never a dense one under a pruned name


def test_a_run_whose_folder_is_deleted_stops_and_the_new_owner_finishes(straight, tmp_path):
    """rm -rf of a running run's folder: a second process takes the new folder's lock; the first stops
    at its next write (exit 3, one line) instead of both finishing into one folder."""
    out = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out), *LONG]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, folder = time.time() + 240, None
    while time.time() < deadline and folder is None:
        found = list(out.rglob("metrics.jsonl"))
        if found and len(read_metrics(found[0])) >= 2:
            folder = found[0].parent
        time.sleep(0.005)
    assert folder is not None
    while folder.exists():  # rm -rf while the run writes into it: a file it adds mid-way fails one pass
        shutil.rmtree(folder, ignore_errors=True)
    second = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 3, err
    one_error(err.splitlines(), f"the run folder {folder} was deleted or replaced while this run wrote to it")
    assert second.returncode == 0, second.stderr
    same_run(straight, folder)


def test_a_folder_deleted_during_a_write_is_run_lost_not_a_crash(tmp_path, monkeypatch):
    """The race the test above can hit: rm -rf lands after the pre-write check, inside the checkpoint write,
    whose temp file then vanishes (FileNotFoundError). The run stops as RunLost (exit 3), not as a crash."""
    from accelerate import Accelerator

    from suite import trainer as T
    from suite.results import RunLost

    def vanish(path, state):
        shutil.rmtree(Path(path).parent)
        raise FileNotFoundError(2, "No such file or directory", str(path) + ".tmp")
    monkeypatch.setattr(T, "save_checkpoint", vanish)
    cfg = load_config(None, [*TINY, "wandb.mode=disabled"])
    with pytest.raises(RunLost, match="was deleted or replaced while this run wrote to it"):
        T.run_experiment(cfg, tmp_path / "runs", Accelerator(cpu=True), progress=False)


# --- issue 17: bad input, one line, exit 2, before data or folders ---------------------------------

BAD_INPUT = {
    "--out=~/x": (["--out=~/x"], "--out ~/x: starts with '~', which the shell did not expand"),
    "seed beyond 64 bits": (["seed=18446744073709551616"], "seed: must be in [0, 2**63 - 1], got 18446744073709551616"),
    "negative seed": (["seed=-1"], "seed: must be in [0, 2**63 - 1], got -1"),
    "batch larger than the training set": (["train.batch_size=600"],
                                           "train.batch_size: 600 is larger than the training set (512 examples)"),
    "target that leaves no weight": (["prune.target_sparsity=0.99999"],
                                     "prune.target_sparsity: 0.99999 prunes all 6816 prunable weights of tiny_mlp"),
    "data.root without the data": (["data.name=mnist", "model.name=lenet300", "data.root=/nonexistent"],
                                   "MNIST not found: no train-images-idx3-ubyte[.gz] in /nonexistent/MNIST/raw"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_before_any_folder(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra, part = BAD_INPUT[case]
    argv = ["--out", str(tmp_path / "runs"), *TINY, *extra]
    code, err, _ = cli(capsys, RUN.main, argv)
    assert code == EXIT_BAD_INPUT
    one_error(err, part)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no runs/ folder, no literal ./~


def test_negative_zero_sparsity_is_zero(tmp_path, capsys):
    dirs = [cli(capsys, RUN.main, ["--print-dir", "--out", str(tmp_path), *TINY, f"prune.target_sparsity={s}"])[2]
            for s in ("-0.0", "0.0", "0")]
    assert dirs[0] == dirs[1] == dirs[2] and "-s0-" in dirs[0]


def test_yaml_merge_keys_load_and_duplicates_still_fail(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("snip: &scoring {bn_mode: train}\ngrasp:\n  <<: *scoring\n  temperature: 100\n")
    cfg = load_config(path, [], "grasp")
    assert (cfg.grasp.bn_mode, cfg.grasp.temperature) == ("train", 100)
    path.write_text("snip: &scoring {bn_mode: train}\ngrasp:\n  <<: *scoring\n  temperature: 1\n  temperature: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'temperature' on line 5"):
        load_config(path, [], "grasp")


def test_sweep_with_a_wrong_data_root_fails_once_before_starting(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text("data: {name: mnist, root: /nonexistent}\nmodel: {name: lenet300}\n")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"base: {tmp_path / 'base.yaml'}\naxes:\n  seed: [1, 2, 3, 4]\n")
    out = tmp_path / "runs"
    started = time.time()
    code, err, _ = cli(capsys, S.main, [str(sweep), "--out", str(out)])
    assert code == EXIT_BAD_INPUT and time.time() - started < 30
    one_error(err, "MNIST not found: no train-images-idx3-ubyte[.gz] in /nonexistent/MNIST/raw",
              "; 4 of the 4 runs to start read it, none started")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("dry", [True, False], ids=["dry run", "run"])
def test_sweep_gpus_without_a_gpu_is_one_line(dry, tmp_path, capsys):
    code, err, _ = cli(capsys, S.main, ["configs/sweeps/quickstart.yaml", "--out", str(tmp_path / "runs"), "--gpus",
                                        "1", *(["--dry-run"] if dry else [])])
    assert code == EXIT_BAD_INPUT
    one_error(err, "--gpus 1: 0 GPUs visible here (no CUDA device); leave --gpus out to run on the CPU")


# --- issue 17: W&B that cannot reach its server ---------------------------------------------------

def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("case,cause", [
    ("no API key", "(UsageError: No API key configured. Use `wandb login` to log in.)"),
    ("server unreachable", "(CommError: "),
])
def test_wandb_online_that_cannot_start_says_why_and_keeps_the_run(case, cause, tmp_path):
    """WANDB_MODE=online with no key, or a key and a server nobody answers: one warning line with W&B's
    own reason and how to go offline; the run trains, logs offline, and its results are on disk."""
    extra = dict(HOME=str(tmp_path), WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}", WANDB_SILENT="true")
    if case == "server unreachable":
        extra.update(WANDB_API_KEY="x" * 40, WANDB_INIT_TIMEOUT="5")
    proc = run_cli(["--out", str(tmp_path / "runs"), *TINY], wandb="online", **extra)
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip().splitlines()[-1])
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("warning: W&B")]
    assert warning.startswith(f"warning: W&B online could not start {cause}"), warning
    assert warning.endswith(f"); logging offline to {tmp_path / 'runs' / 'wandb'} instead (upload later with `wandb sync`; "
                            f"set wandb.mode=offline to skip the attempt)")
    if case == "server unreachable":
        assert "connection refused" in warning
    assert RunFolder(folder).finished() and list((tmp_path / "runs").glob("wandb/offline-run-*/run-*.wandb"))
    assert "unexpected" not in proc.stderr and not (folder / "error.log").exists()


# --- issue 17: other faults -----------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: room for config.json, not for a checkpoint (needs root and mount)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("no tmpfs mount allowed here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_full_disk_says_no_space_left_on_the_folder(small_disk, capsys):
    """A real full file system (tmpfs), through the real write path: one line naming the folder and the
    file, exit 1, and no empty error.log (there is no room for one)."""
    code, err, _ = cli(capsys, RUN.main, ["--no-progress", "--out", str(small_disk / "runs"), *TINY])
    assert code == EXIT_FAILED
    (folder,) = {p.parent for p in (small_disk / "runs").rglob("config.json")}
    assert err == [f"error: no space left on {folder} (writing checkpoint.pt); free some space and run the same "
                   f"command again (it resumes from the last checkpoint)"]
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "config.json"]  # no temp file, no empty log


@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["at once", "50 ms apart"])
def test_two_sigterms_in_quick_succession_still_exit_75(gap, tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out), *LONG]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        found = list(out.rglob("metrics.jsonl"))
        if found and len(read_metrics(found[0])) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    time.sleep(gap)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert err.splitlines()[-1].endswith("; the same command resumes") and "Traceback" not in err


@pytest.fixture
def read_only_copy(straight, tmp_path):
    """The finished run under a read-only bind mount (root writes through chmod; a mount it cannot)."""
    source, view = tmp_path / "source", tmp_path / "view"
    out, folder = copy_run(straight, source)
    shutil.copy(folder / "result.json", folder / "checkpoint.pt")  # a stale checkpoint: the cleaner tries to lock
    view.mkdir()
    done = subprocess.run(["mount", "--bind", str(source), str(view)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("no bind mount allowed here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True).returncode != 0:
            pytest.skip("no read-only remount allowed here")
        yield view / "runs", view / folder.relative_to(source)
    finally:
        subprocess.run(["umount", str(view)], capture_output=True)


def test_a_finished_run_on_a_read_only_folder_is_exit_0(read_only_copy, capsys):
    out, folder = read_only_copy
    code, err, stdout = cli(capsys, RUN.main, ["--no-progress", "--out", str(out), *LONG])
    assert (code, err, stdout.strip()) == (0, [f"already finished (use --force to run again): {folder}"], str(folder))


def test_slurm_script_quotes_paths_and_names_with_spaces_and_command_substitution(tmp_path):
    """#SBATCH values in double quotes (sbatch reads them; bash never does), the run lines shell-quoted:
    under bash the task runs exactly the planned argv and `$(...)` never runs."""
    import shlex
    (tmp_path / "base.yaml").write_text("data: {name: synthetic}\nmodel: {name: tiny_mlp}\ntrain: {epochs: 1}\n")
    sweep = tmp_path / "my study $(touch pwned).yaml"
    sweep.write_text(f"base: {tmp_path / 'base.yaml'}\naxes:\n  seed: [1, 2]\n")
    out = tmp_path / "my runs $(touch pwned)"
    assert S.main([str(sweep), "--out", str(out), "--backend", "slurm"]) == 0
    script = out / "sweeps" / sweep.stem / "array.sbatch"
    text = script.read_text()
    directives = dict(shlex.split(line[len("#SBATCH "):])[0].split("=", 1) for line in text.splitlines()
                      if line.startswith("#SBATCH --") and "=" in line)
    assert directives["--job-name"] == "pp-my study $(touch pwned)"
    assert directives["--output"] == f"{out / 'sweeps' / sweep.stem / 'slurm'}/%A_%a.out"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {shlex.quote(str(tmp_path / "argv"))}\n')
    (bin_dir / "python").chmod(0o755)
    task_env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_ARRAY_TASK_ID="1", SLURM_JOB_ID="9")
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=task_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    run = S.expand(S.load_sweep(sweep), out.resolve(), str(out.resolve())).runs[1]
    assert (tmp_path / "argv").read_text().splitlines() == S.run_command(run)[1:]
    assert not list(tmp_path.rglob("pwned")) and not (ROOT / "pwned").exists()


def test_accelerate_launch_of_two_processes_without_multi_gpu_warns(tmp_path):
    """On a CPU, `accelerate launch --num_processes 2` without --multi_gpu starts ONE process: the run
    says so in one line and trains (world size 1, exit 0)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "suite/run.py", "--no-progress", "--out",
           str(tmp_path / "runs"), *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env(CUDA_VISIBLE_DEVICES=""),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "warning: accelerate launch was asked for 2 processes but started one (world size 1): this run trains " \
           "alone; for 2 processes add --multi_gpu (on a machine without GPUs also ACCELERATE_USE_CPU=1)" \
           in proc.stderr.splitlines()
    assert result(Path(proc.stdout.strip().splitlines()[-1]))["world_size"] == 1


def test_multi_gpu_launch_on_a_cpu_without_accelerate_use_cpu_says_why_first(tmp_path):
    """`--multi_gpu` on a machine without GPUs and without ACCELERATE_USE_CPU=1: the suite's line comes
    first on stderr; torchrun's ChildFailedError report follows (exit 1), as the README shows."""
    from helpers import launch_2proc
    proc = launch_2proc(["suite/run.py", "--no-progress", "--out", str(tmp_path / "runs"), *TINY], use_cpu=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0] == ("error: launched as 2 processes but Accelerate sees a world size of 1; on a machine without "
                        "GPUs launch with: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 "
                        "suite/run.py ..."), lines[:3]
    assert "ChildFailedError" in proc.stderr


def test_report_follows_a_linked_run_folder_and_lists_a_link_to_one_it_read(straight, tmp_path):
    """A seed folder kept elsewhere and linked in is counted, as the sweep counts it; a link to a folder
    the report already read is listed as a duplicate, never counted twice."""
    out, folder = copy_run(straight, tmp_path)
    elsewhere = tmp_path / "elsewhere" / folder.parent.name
    elsewhere.mkdir(parents=True)
    shutil.move(str(folder), elsewhere / folder.name)
    folder.symlink_to(elsewhere / folder.name, target_is_directory=True)
    runs, skipped = R.scan_runs(out)
    assert [(r.seed, r.path) for r in runs] == [(42, folder)] and skipped == []
    assert S.run_status(folder).state == "done"
    (out / "zz-link").symlink_to(folder.parent, target_is_directory=True)  # walked after the folder itself
    runs, skipped = R.scan_runs(out)
    assert len(runs) == 1 and [(s.status, s.path) for s in skipped] == [("duplicate", "zz-link")]


def test_a_channel_structured_result_counts_up_to_its_target_in_whole_channels():
    from suite.results import InvalidResult, check_exact_count
    base = {"target_sparsity": 0.5, "prunable_total": 100, "science": {"prune.structure": "channel"}}
    check_exact_count({**base, "prunable_remaining": 52, "achieved_sparsity": 0.48})  # whole channels: under
    with pytest.raises(InvalidResult, match=r"0.510000 \(51 of 100 weights pruned\) exceeds its target 0.500000 "
                                            r"\(50 at most, in whole channels\)"):
        check_exact_count({**base, "prunable_remaining": 49, "achieved_sparsity": 0.51})
    with pytest.raises(InvalidResult, match=r"\(48 of 100 weights pruned\) is not its target 0.500000 \(50 pruned"):
        check_exact_count({**base, "science": {}, "prunable_remaining": 52, "achieved_sparsity": 0.48})

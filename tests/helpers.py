"""Running the real CLI as a subprocess, the way users and the sweep run it."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import load_file

from suite import run as RUN
from suite.results import read_metrics

ROOT = Path(__file__).resolve().parents[1]

# a run on the tiny synthetic dataset that takes about a second
TINY = ["data.name=synthetic", "model.name=tiny_mlp", "train.epochs=4", "train.batch_size=64", "train.lr=0.05"]


def env(**extra: str) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", WANDB_SILENT="true",
             PYTHONPATH=str(ROOT))
    e.update(extra)
    return e


def run_cli(args: list[str], *, wandb: str = "disabled", timeout: int = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env(WANDB_MODE=wandb, **extra))


def launch_2proc(script_and_args: list[str], timeout: int = 300, use_cpu: bool = True, **extra: str) -> subprocess.CompletedProcess:
    """A real 2-process gloo job on the CPU (ACCELERATE_USE_CPU=1 --multi_gpu)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(29500 + os.getpid() % 1000), *script_and_args]
    extra_env = {"ACCELERATE_USE_CPU": "1"} if use_cpu else {"CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env(**extra_env, **extra))


def run_folder(stdout: str) -> Path:
    """run.py prints the run folder as its last stdout line."""
    return Path(stdout.strip().splitlines()[-1])


def result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def kill_at_epoch(out: Path, args: list[str], epochs: int, timeout: float = 120) -> Path:
    """Start run.py, SIGKILL it once its metrics.jsonl holds `epochs` epochs, and return that file
    (asserting the run had not finished yet, so that the rerun really resumes)."""
    import signal
    import time

    cmd = [sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, metrics_file = time.time() + timeout, None
    while time.time() < deadline:
        found = list(out.rglob("metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= epochs:
            metrics_file = found[0]
            break
        time.sleep(0.02)
    assert metrics_file is not None, f"the run never reached epoch {epochs}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (metrics_file.parent / "result.json").exists(), "killed too late: make the run slower"
    return metrics_file


def wandb_records(path):
    """The records of an offline run's .wandb file (LevelDB-style log blocks of W&B protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb
    raw, pos, buf, block = path.read_bytes(), 7, b"", 32768  # 7 bytes: the ":W&B" file header
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(raw[pos + 4:pos + 6], "little"), raw[pos + 6]
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL, LAST
            rec = pb.Record()
            rec.ParseFromString(buf + data if kind == 4 else data)
            yield rec
        elif kind == 2:  # FIRST
            buf = data
        elif kind == 3:  # MIDDLE
            buf += data


# --- running the CLI in this process, and comparing run folders (shared by the fault tests) ---

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
    return [{k: v for k, v in row.items() if k not in ("epoch_time_s", "examples_per_s")} for row in rows]


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


def copy_run(folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a run folder under a fresh runs folder (same experiment/seed path)."""
    out = tmp_path / "runs"
    target = out / folder.parent.name / folder.name
    shutil.copytree(folder, target)
    return out, target


def epoch_of(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["epoch"])


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("keep me\n")
    return path


# --- scoring leaves the model as it found it (SNIP, GraSP) ------------------------------------

class BNNet(nn.Module):
    """Conv + BatchNorm + Dropout + Linear: everything scoring must leave as it found it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.drop(F.relu(self.bn(self.conv(x)))).flatten(1))


def bn_batches():
    """Two seeded batches of 6 2x4x4 inputs with 3-class labels."""
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(6, 2, 4, 4, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(2)]


def model_snapshot(model):
    """The state, train flags, grads and requires_grad of a model, copied."""
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: m.training for n, m in model.named_modules()},
            {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
            {n: p.requires_grad for n, p in model.named_parameters()})


def assert_untouched(model, before):
    """The model is exactly as `model_snapshot` found it."""
    state, flags, grads, needs = model_snapshot(model)
    assert state.keys() == before[0].keys()
    for k in state:
        assert torch.equal(state[k], before[0][k]), k
    assert flags == before[1]
    for n in grads:
        assert (grads[n] is None) == (before[2][n] is None), n
        if grads[n] is not None:
            assert torch.equal(grads[n], before[2][n]), n
    assert needs == before[3]


@contextlib.contextmanager
def tmpfs(folder: Path, options: str, why_skip: str):
    """`folder` with a tmpfs mounted on it (mount -o options; needs root), unmounted afterwards; the test is
    skipped with why_skip where mounting is not allowed."""
    import pytest
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(why_skip)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)

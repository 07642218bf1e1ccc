"""Running the real CLI as a subprocess, the way users and the sweep run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

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

"""suite/run.py, the command: bad input is one line and exit 2, signals and read-only folders end
cleanly, launches say what is wrong first."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import (LONG, ROOT, TINY, a_file, cli, copy_run, env, metrics, one_error, result, run_cli, run_folder,
                     tensors, tmpfs)
import launch as S
from suite import run as RUN
from suite.exits import EXIT_BAD_INPUT, EXIT_FAILED
from suite.experiment import load_config, run_dir
from suite.results import read_metrics

pytestmark = pytest.mark.usefixtures("quiet")  # W&B off, one torch thread: bitwise comparisons with subprocesses


def test_overrides_anywhere_on_the_line(tmp_path, capsys):
    out = str(tmp_path / "runs")
    expected = run_dir(load_config(None, [*TINY, "prune.t_end=2"]), out)
    for argv in (["--print-dir", "--out", out, *TINY, "prune.t_end=2"],
                 [TINY[0], "--out", out, *TINY[1:], "--print-dir", "prune.t_end=2"],
                 [*TINY, "--print-dir", "prune.t_end=2", "--out", out]):
        code, err, stdout = cli(capsys, RUN.main, argv)
        assert (code, err, stdout.strip()) == (0, [], str(expected)), argv


@pytest.mark.parametrize("where", ["is a file", "under a file"])
def test_run_out_that_is_a_file_or_under_one(where, tmp_path, capsys):
    f = a_file(tmp_path)
    out = f if where == "is a file" else f / "runs"
    code, err, _ = cli(capsys, RUN.main, ["--out", str(out), *TINY])
    assert code == EXIT_BAD_INPUT
    one_error(err, "--out", out, "is a file")
    assert f.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


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
    with tmpfs(folder, "ro,size=1m", "root, and no read-only mount allowed here"):
        yield folder


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


@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["at once", "50 ms apart"])
@pytest.mark.slow  # real runs stopped by signals
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


@pytest.mark.ddp
@pytest.mark.slow
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


@pytest.mark.ddp
@pytest.mark.slow
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


# --- issue 25 (hardb) ----------------------------------------------------------------------


SLOW = ["data.name=synthetic", "data.synthetic_train=6000", "data.synthetic_shape=[1,28,28]",
        "model.name=lenet300", "train.epochs=6", "train.batch_size=50", "prune.t_end=4"]


def stop_mid_run(out, signum: int, after_epochs: int = 2) -> tuple[subprocess.CompletedProcess, int]:
    """Start run.py on SLOW, send `signum` once `after_epochs` epochs are checkpointed; the finished
    process and the epoch its checkpoint holds."""
    cmd = [sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out), *SLOW]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        found = list(out.rglob("metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= after_epochs:
            break
        time.sleep(0.01)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    (checkpoint,) = out.rglob("checkpoint.pt")
    assert not (checkpoint.parent / "result.json").exists(), "the run finished before the signal"
    epoch = torch.load(checkpoint, weights_only=False)["epoch"]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), epoch


def test_ctrl_c_is_one_line_exit_130_and_the_same_command_resumes_bitwise(tmp_path):
    """Issue 25 case 19: Ctrl-C (a real SIGINT) mid-run was a 30-line KeyboardInterrupt traceback, exit 1."""
    stopped, epoch = stop_mid_run(tmp_path / "b", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.splitlines() == [f"interrupted at epoch {epoch + 1}; the same command resumes"]
    assert 2 <= epoch < 6
    resumed = run_cli(["--out", str(tmp_path / "b"), *SLOW])
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.splitlines()[0].endswith(f" at round 0 epoch {epoch}")  # "resuming <folder> at ..."
    straight = run_cli(["--out", str(tmp_path / "a"), *SLOW])
    assert straight.returncode == 0, straight.stderr
    a, b = run_folder(straight.stdout), run_folder(resumed.stdout)
    for key in ("final_test_accuracy", "final_test_loss", "train_flops", "achieved_sparsity", "layer_sparsity",
                "total_epochs_trained"):
        assert result(a)[key] == result(b)[key], key
    for file in ("mask.safetensors", "model.safetensors"):
        ta, tb = tensors(a / file), tensors(b / file)
        assert all(torch.equal(ta[k], tb[k]) for k in ta), file
    timing = ("epoch_time_s", "examples_per_s")
    strip = lambda rows: [{k: v for k, v in row.items() if k not in timing} for row in rows]
    assert strip(metrics(a)) == strip(metrics(b))


def test_sigterm_is_the_same_line_with_exit_75(tmp_path):
    """SIGTERM (SLURM before the time limit, a sweep stopping) keeps its exit code 75: the sweep and the
    SLURM scripts requeue on it; Ctrl-C's 130 is what a shell reports for SIGINT."""
    stopped, epoch = stop_mid_run(tmp_path, signal.SIGTERM)
    assert stopped.returncode == 75, stopped.stderr
    assert stopped.stderr.splitlines() == [f"interrupted at epoch {epoch + 1}; the same command resumes"]


def test_the_stop_line_names_the_round_of_an_lth_chain():
    from suite.trainer import STARTING_UP, Interrupted
    assert Interrupted(signal.SIGINT, (2, 3, 4)).line() == "interrupted at round 2 epoch 3; the same command resumes"
    assert Interrupted(signal.SIGINT, (0, 3, 1)).line() == "interrupted at epoch 3; the same command resumes"
    assert Interrupted().line() == STARTING_UP == "interrupted while starting up; the same command resumes"
    assert Interrupted().signum == signal.SIGTERM

"""suite/run.py as a user meets it: what a stopped run says, and its exit code."""
import signal
import subprocess
import sys
import time

import torch

from helpers import ROOT, env, metrics, result, run_cli, run_folder, tensors

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
    timing = ("epoch_time_s", "images_per_s")
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

"""W&B: a monotonic step over LTH rounds, the sweep's name as a tag of its runs, and the report run
named, grouped under the sweep and tagged like its training runs (real wandb, offline)."""
import subprocess
import sys

from accelerate import Accelerator
from accelerate.tracking import GeneralTracker

from helpers import ROOT, env


class Recorder(GeneralTracker):
    """A real Accelerate tracker that keeps what it is given."""
    name = "recorder"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.logged = []

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        pass

    def log(self, values, step=None, **kwargs):
        self.logged.append((step, values))


def test_lth_rounds_log_one_increasing_step(tmp_path):
    from suite import config as C
    from suite.trainer import Runner
    cfg = C.load_config(None, ["data.name=synthetic", "model.name=tiny_mlp", "train.epochs=2", "train.batch_size=64",
                               "prune.target_sparsity=0.75", "lth.rate=0.5", "wandb.mode=disabled"], "lth")
    recorder = Recorder()
    acc = Accelerator(cpu=True, log_with=[recorder])
    acc.init_trackers("p")
    Runner(cfg, tmp_path, acc).run(progress=False)
    steps = [step for step, _ in recorder.logged]
    assert steps == list(range(1, 7))  # 3 rounds of 2 epochs: the step never goes back
    assert [v["epochs_trained"] for _, v in recorder.logged] == steps
    assert [(v["round"], v["epoch"]) for _, v in recorder.logged] == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]


def test_sweep_runs_and_the_report_run_are_linked_by_the_sweep_name(tmp_path):
    (tmp_path / "base.yaml").write_text("data: {name: synthetic}\nmodel: {name: tiny_mlp}\n"
                                        "train: {epochs: 2, batch_size: 64, lr: 0.05}\nwandb: {mode: offline}\n")
    sweep = tmp_path / "tagcheck_study.yaml"
    sweep.write_text(f"# python launch/sweep.py {sweep}\nbase: {tmp_path / 'base.yaml'}\n"
                     "axes:\n  method: [dense]\n  seed: [42]\n")
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, str(ROOT / "launch" / "sweep.py"), str(sweep), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=240, env=env(WANDB_MODE="offline"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (train_log,) = out.rglob("run-*.wandb")
    assert b"tagcheck_study" in train_log.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "suite.report", str(out), "--wandb", "--wandb-dir", str(tmp_path / "wb")],
                          capture_output=True, text=True, cwd=ROOT, timeout=240, env=env(WANDB_MODE="offline"))
    assert proc.returncode == 0, proc.stderr
    (report_log,) = (tmp_path / "wb").rglob("run-*.wandb")
    raw = report_log.read_bytes()
    for needle in (b"report-runs", b"tagcheck_study", b"dense-tiny_mlp-synthetic-"):
        assert needle in raw, needle

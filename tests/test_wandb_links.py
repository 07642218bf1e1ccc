"""W&B: a monotonic step over LTH rounds, the sweep's name as a tag and job type of its runs, readable
groups, a config of the method's own settings, per-round summary keys, and the report run named, grouped
under the sweep and tagged like its training runs (real wandb, offline)."""
import pytest
import subprocess
import sys
from pathlib import Path

from accelerate import Accelerator
from accelerate.tracking import GeneralTracker

from helpers import ROOT, env, wandb_records

pytestmark = pytest.mark.slow  # real training runs with real (offline) wandb


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
    from suite import experiment as E
    from suite.trainer import Runner
    cfg = E.load_config(None, ["data.name=synthetic", "model.name=tiny_mlp", "train.epochs=2", "train.batch_size=64",
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
    for needle in (b"report-runs", b"tagcheck_study", b"tiny_mlp-synthetic-dense-s0"):
        assert needle in raw, needle


def test_lth_run_on_the_dashboard_readable_group_rounds_method_config_and_sweep(tmp_path):
    """A real offline W&B run of an LTH chain: group `<model>-<data>-<method>-s<sparsity>-<hash>`, the
    sweep's name as job type and tag, a config with LTH's settings and no other method's, and every
    round's result in the summary under round_<r>/."""
    import json
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out),
                           "--method", "lth", "data.name=synthetic", "model.name=tiny_mlp", "train.epochs=2",
                           "train.batch_size=64", "prune.target_sparsity=0.75", "lth.rate=0.5"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=env(WANDB_MODE="offline", PP_SWEEP="dash_study"))
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip().splitlines()[-1])
    (log,) = out.glob("wandb/offline-run-*/run-*.wandb")
    records = list(wandb_records(log))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    experiment = json.loads((folder / "result.json").read_text())["experiment"]
    assert (run.run_group, run.job_type, run.display_name) == (f"tiny_mlp-synthetic-lth-s0.75-{experiment}",
                                                               "dash_study", f"lth-s0.75-{experiment}-seed42")
    assert list(run.tags) == ["tiny_mlp", "synthetic", "lth", "dash_study"]
    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for i in r.config.update}
    result = json.loads((folder / "result.json").read_text())
    assert config["experiment"] == result["experiment"] and folder.parent.name.endswith(config["experiment"])
    assert sorted(k for k in config if not k.startswith("_")) == \
        ["data", "experiment", "lth", "method", "model", "prune", "seed", "train", "wandb"]
    assert config["lth"] == {"rate": 0.5, "rewind_epoch": 0, "rewind_step": 0}
    summary = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for i in r.summary.update if i.key}
    for r in range(3):
        round_result = json.loads((folder / f"round_{r}" / "result.json").read_text())
        for key in ("final_test_accuracy", "best_val_accuracy", "test_accuracy_at_best_val", "achieved_sparsity",
                    "target_sparsity", "total_epochs_trained", "train_cost_x_dense_cycle"):
            assert summary[f"round_{r}/{key}"] == round_result[key], (r, key)
    assert [summary[f"round_{r}/target_sparsity"] for r in range(3)] == [0.0, 0.5, 0.75]  # round 1: chartable

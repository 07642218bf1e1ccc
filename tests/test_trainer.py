"""End to end through the real CLI: one process, synthetic data, exact counts."""
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import ROOT, TINY, env, kill_at_epoch, metrics, result, run_cli, run_folder, tensors
from suite.results import RunFolder
from suite import masks as M


@pytest.fixture(scope="module")
def progressive_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = run_cli(["--method", "progressive", "--out", str(out), *TINY, "prune.target_sparsity=0.9",
                    "prune.t_end=2"])
    assert proc.returncode == 0, proc.stderr
    return out, run_folder(proc.stdout)


def test_progressive_reaches_the_exact_target_count(progressive_run):
    _, folder = progressive_run
    r = result(folder)
    n = r["prunable_total"]
    assert r["prunable_total"] - r["prunable_remaining"] == round(0.9 * n)
    assert r["achieved_sparsity"] == round(0.9 * n) / n
    assert r["params_total"] - r["params_remaining"] == round(0.9 * n)
    assert (r["method"], r["model"], r["dataset"], r["seed"], r["epochs"], r["world_size"]) == \
        ("progressive", "tiny_mlp", "synthetic", 42, 4, 1)
    for key in ("final_test_accuracy", "wall_time_s", "core_hours"):
        assert isinstance(r[key], float)
    assert r["core_hours"] == r["wall_time_s"] * r["threads"] / 3600
    assert r["metric"] == {"name": "test_accuracy", "label": "test accuracy (%)", "higher_is_better": True}
    assert (r["init"], r["distribution"], r["val_size"], r["cycles"]) == ("kaiming_normal", "global", 0, 1.0)
    assert r["device"].startswith("cpu (")
    assert set(r["versions"]) == {"python", "torch", "accelerate", "suite"}
    assert r["versions"]["torch"] == torch.__version__


def test_predictions_file_holds_every_test_example_and_agrees_with_the_accuracy(progressive_run):
    from suite.results import read_predictions
    _, folder = progressive_run
    r = result(folder)
    predicted, labels = read_predictions(folder / r["predictions_file"])
    assert r["predictions_file"] == "predictions.npy"
    assert predicted.dtype.name == labels.dtype.name == "uint8"
    assert predicted.shape == labels.shape == (256,)  # the synthetic test split, every example once
    assert 100.0 * int((predicted == labels).sum()) / 256 == r["final_test_accuracy"]  # the same model, the same split
    assert set(labels.tolist()) <= set(range(10)) and len(set(labels.tolist())) > 1


def test_live_weights_per_class_are_the_output_rows_of_the_mask(progressive_run):
    _, folder = progressive_run
    r = result(folder)
    mask = tensors(folder / "mask.safetensors")
    layer = r["live_per_class_layer"]
    assert layer == list(mask)[-1]
    assert r["live_per_class"] == [int(v) for v in mask[layer].reshape(mask[layer].shape[0], -1).sum(1).tolist()]
    assert len(r["live_per_class"]) == 10


def test_linear_schedule_per_epoch_and_monotonic_masks(progressive_run):
    _, folder = progressive_run
    rows = metrics(folder)
    n = result(folder)["prunable_total"]
    # t_end = 2: s(1) = 0.45, s(2) = s(3) = s(4) = 0.9
    assert [row["target_sparsity"] for row in rows] == [0.45, 0.9, 0.9, 0.9]
    assert [n - row["prunable_remaining"] for row in rows] == [round(0.45 * n)] + [round(0.9 * n)] * 3
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert rows[0]["lr"] == 0.05  # cosine at epoch 0


def test_without_a_validation_split_nothing_is_selected(progressive_run):
    _, folder = progressive_run
    rows, r = metrics(folder), result(folder)
    assert r["final_test_accuracy"] == rows[-1]["test_accuracy"]
    for key in ("final_val_accuracy", "best_val_accuracy", "best_val_epoch", "test_accuracy_at_best_val"):
        assert r[key] is None, key
    for key in ("best_test_accuracy", "best_epoch", "best_test_accuracy_any_epoch"):  # never the test set
        assert key not in r, key
    assert {row["val_accuracy"] for row in rows} == {None}


def test_the_best_epoch_is_chosen_on_validation_and_reported_on_test(tmp_path):
    proc = run_cli(["--method", "progressive", "--out", str(tmp_path), *TINY, "prune.target_sparsity=0.9",
                    "prune.t_end=2", "data.val_size=100"])
    assert proc.returncode == 0, proc.stderr
    folder = run_folder(proc.stdout)
    rows, r = metrics(folder), result(folder)
    best = max(rows, key=lambda row: row["val_accuracy"])  # the first epoch with the highest val accuracy
    assert (r["best_val_epoch"], r["best_val_accuracy"]) == (best["epoch"], best["val_accuracy"])
    assert r["test_accuracy_at_best_val"] == best["test_accuracy"]
    assert r["final_val_accuracy"] == rows[-1]["val_accuracy"]
    assert r["val_size"] == 100
    # 100 examples in the split: every accuracy is a whole percent
    assert all(row["val_accuracy"] == round(row["val_accuracy"]) for row in rows)


def test_pruned_weights_are_exactly_zero_and_files_load_safely(progressive_run):
    _, folder = progressive_run
    mask, weights = tensors(folder / "mask.safetensors"), tensors(folder / "model.safetensors")
    assert set(mask) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    for name, m in mask.items():
        assert (weights[name][m == 0] == 0).all()
        assert int((weights[name] == 0).sum()) == int((m == 0).sum())  # live weights are not zero
    layer = result(folder)["layer_sparsity"]
    assert layer == {name: int((m == 0).sum()) / m.numel() for name, m in mask.items()}
    assert not (folder / "checkpoint.pt").exists()
    assert json.loads((folder / "config.json").read_text())["method"] == "progressive"


@pytest.mark.slow  # three real runs
def test_finished_run_is_skipped_and_force_reruns(progressive_run):
    out, folder = progressive_run
    before = (folder / "result.json").read_text()
    proc = run_cli(["--out", str(out), *TINY, "prune.target_sparsity=0.9", "prune.t_end=2"])
    assert proc.returncode == 0 and "already finished" in proc.stderr
    assert (folder / "result.json").read_text() == before
    proc = run_cli(["--out", str(out), "--force", *TINY, "prune.target_sparsity=0.9", "prune.t_end=2"])
    assert proc.returncode == 0, proc.stderr
    again = json.loads((folder / "result.json").read_text())
    old = json.loads(before)
    assert again["final_test_accuracy"] == old["final_test_accuracy"]  # deterministic on CPU


@pytest.mark.parametrize("args, message", [
    (["--method", "nope"], "error: unknown method 'nope' (valid: "),
    (["train.epochs=-1"], "error: train.epochs: must be at least 1, got -1"),
    (["train.lr=abc"], "error: train.lr: expected float, got 'abc'"),
    (["--config", "configs/none.yaml"], "error: config file not found: configs/none.yaml"),
    (["data.name=nope"], "error: "),
    (["train.batch_size=100000"], "error: train.batch_size"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = run_cli(["--out", str(tmp_path), *TINY, *args])
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


def test_divergence_is_recorded_as_failed(tmp_path):
    proc = run_cli(["--out", str(tmp_path), *TINY, "train.lr=1e30"])
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failed = next(tmp_path.rglob("failed.json"))
    reason = json.loads(failed.read_text())
    assert reason["status"] == "failed" and "diverged" in reason["reason"]
    assert not (failed.parent / "result.json").exists()


def test_help_lists_every_config_key_with_default():
    proc = subprocess.run([sys.executable, "suite/run.py", "--help"], capture_output=True, text=True, cwd=ROOT, env=env())
    assert proc.returncode == 0
    for line in ("prune.target_sparsity (float) = 0.9", "train.batch_size (int) = 128", "--method", "--out",
                 "lth.rewind_epoch (int) = 0", "pruning method, one of:"):
        assert line in proc.stdout


def test_print_dir_names_the_hash_folder(tmp_path):
    proc = run_cli(["--print-dir", "--out", "runs", "seed=123"])
    assert proc.returncode == 0
    assert proc.stdout.strip() == "runs/progressive-lenet300-mnist1d-s0.9-4bfc1133572b/seed_123"


SLOW = ["data.name=synthetic", "data.synthetic_train=6000", "data.synthetic_shape=[1,28,28]",
        "model.name=lenet300", "train.epochs=6", "train.batch_size=50", "prune.t_end=4"]


def _resumed_equals_straight(tmp_path, args: list[str]) -> Path:
    """Run `args` straight through, and again killed after epoch 2 then resumed: the two agree bit for
    bit (results, mask, weights, every epoch's record); the straight run's folder."""
    straight = run_cli(["--out", str(tmp_path / "a"), *args])
    assert straight.returncode == 0, straight.stderr
    folder_a = run_folder(straight.stdout)
    kill_at_epoch(tmp_path / "b", args, 2)
    resumed = run_cli(["--out", str(tmp_path / "b"), *args])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    folder_b = run_folder(resumed.stdout)
    ra, rb = result(folder_a), result(folder_b)
    for key in ("final_test_accuracy", "final_test_loss", "train_flops", "scoring_flops", "achieved_sparsity",
                "prunable_remaining", "layer_sparsity", "total_epochs_trained"):
        assert ra[key] == rb[key], key
    for file in ("mask.safetensors", "model.safetensors"):
        a, b = tensors(folder_a / file), tensors(folder_b / file)
        assert all(torch.equal(a[k], b[k]) for k in a), file
    strip = lambda rows: [{k: v for k, v in row.items() if k not in ("epoch_time_s", "examples_per_s")} for row in rows]
    assert strip(metrics(folder_a)) == strip(metrics(folder_b))
    return folder_a


@pytest.mark.slow  # two real runs, one killed
def test_sigkill_mid_training_then_resume_is_bitwise_identical(tmp_path):
    folder = _resumed_equals_straight(tmp_path, SLOW)  # asserts the two runs agree bit for bit
    assert [rec["epoch"] for rec in metrics(folder)] == [1, 2, 3, 4, 5, 6]  # every epoch, once


SLOW_STEPS = [*SLOW[:4], SLOW[5], "train.steps=650", "train.optimizer=adamw", "train.lr=0.002", "train.weight_decay=0.1",
              "train.lr_schedule=warmup_cosine", "train.warmup_steps=50", "train.grad_clip=0.5",
              "prune.update_every_steps=25"]  # 650 steps of 120 a epoch: five epochs and 50 steps


@pytest.mark.slow  # two real runs, one killed
def test_sigkill_then_resume_under_a_step_budget_is_bitwise_identical(tmp_path):
    folder = _resumed_equals_straight(tmp_path, SLOW_STEPS)
    assert [rec["steps"] for rec in metrics(folder)] == [120] * 5 + [50]


@pytest.mark.slow  # two real runs
def test_sigterm_exits_75_after_a_checkpoint_and_the_rerun_resumes(tmp_path):
    cmd = [sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(tmp_path), *SLOW]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.rglob("checkpoint.pt")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 75, stderr
    assert stderr.splitlines()[-1].endswith("; the same command resumes") and "Traceback" not in stderr
    (checkpoint,) = tmp_path.rglob("checkpoint.pt")
    assert not (checkpoint.parent / "result.json").exists()
    resumed = run_cli(["--out", str(tmp_path), *SLOW])
    assert resumed.returncode == 0 and "resuming" in resumed.stderr
    assert result(run_folder(resumed.stdout))["total_epochs_trained"] == 6


def test_a_run_held_by_another_process_exits_3(tmp_path):
    from suite import experiment as E
    from suite.results import RunLock
    folder = E.run_dir(E.load_config(None, TINY), tmp_path)
    with RunLock(folder):
        proc = run_cli(["--out", str(tmp_path), *TINY])
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1] == f"error: run is locked by another process: {folder}"
    assert not (folder / "result.json").exists()


@pytest.mark.slow  # a real run
def test_bf16_keeps_pruned_weights_exactly_zero(tmp_path):
    proc = run_cli(["--out", str(tmp_path), *TINY, "train.precision=bf16", "model.name=tiny_cnn"])
    assert proc.returncode == 0, proc.stderr
    folder = run_folder(proc.stdout)
    mask, weights = tensors(folder / "mask.safetensors"), tensors(folder / "model.safetensors")
    for name, m in mask.items():
        assert weights[name].dtype == torch.float32  # fp32 master weights, bf16 only in autocast
        assert int((weights[name][m == 0] != 0).sum()) == 0
    r = result(folder)
    assert r["prunable_total"] - r["prunable_remaining"] == round(0.9 * r["prunable_total"])


def test_a_layer_pruned_to_zero_is_warned_once_and_recorded(tmp_path, capsys):
    from accelerate import Accelerator

    from suite import experiment as E
    from suite.trainer import Runner
    cfg = E.load_config(None, [*TINY, "wandb.mode=disabled"], method="dense")
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    runner.new_optimizer()
    mask = {n: torch.ones_like(w, dtype=torch.bool) for n, w in runner.weights.items()}
    mask["fc3.weight"][:] = False
    assert runner._install(mask) and runner._install({n: m.clone() for n, m in mask.items()})
    warnings = [line for line in capsys.readouterr().err.splitlines() if "layer collapse" in line]
    assert warnings == ["warning: layer fc3.weight is pruned to zero weights (layer collapse)"]
    r = runner._result(0, [], {"epochs_trained": 0, "wall_time_s": 0.0})
    assert r["collapsed_layers"] == ["fc3.weight"] and r["layer_sparsity"]["fc3.weight"] == 1.0
    assert r["method_kind"] == "dense"  # what the report reads without importing the registry
    assert r["prunable_total"] - r["prunable_remaining"] == runner.weights["fc3.weight"].numel()


@pytest.mark.slow  # real runs with real (offline) W&B
def test_wandb_offline_run_mirrors_the_result_and_can_carry_the_mask(tmp_path):
    proc = run_cli(["--out", str(tmp_path), *TINY, "wandb.log_mask=true"], wandb="offline")
    assert proc.returncode == 0, proc.stderr
    assert (run_folder(proc.stdout) / "result.json").is_file()
    (run,) = [p for p in (tmp_path / "wandb").glob("offline-run-*") if p.is_dir()]
    raw = next(run.glob("*.wandb")).read_bytes()
    run_id = run.name.split("-", 3)[-1]  # offline-run-<date>_<time>-<id>
    for needle in (f"mask-{run_id}", "mask.safetensors", "final_test_accuracy", "tiny_mlp", "synthetic"):
        assert needle.encode() in raw, needle


FINISHED_FILES = ["config.json", "mask.safetensors", "metrics.jsonl", "model.safetensors", "predictions.npy", "result.json"]


def test_a_finished_run_folder_holds_its_results_and_no_lock_file(tmp_path):
    """Issue 25 case 24: `.lock` stayed in every finished run folder. A folder an older version finished
    (its lock file left behind) loses only the lock file when the same command runs again."""
    proc = run_cli(["--out", str(tmp_path), *TINY])
    assert proc.returncode == 0, proc.stderr
    folder = run_folder(proc.stdout)
    assert sorted(p.name for p in folder.iterdir()) == FINISHED_FILES
    (folder / ".lock").write_text("12345\n")  # as every finished folder of an older version has it
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != ".lock"}
    again = run_cli(["--out", str(tmp_path), *TINY])
    assert again.returncode == 0 and "already finished" in again.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_result_the_suite_would_not_count_fails_instead_of_finishing(tmp_path, monkeypatch, capsys):
    """Issue 25, case 8: a run whose final mask missed its target printed "done ... sparsity 0.0000 (target
    0.9000)", exited 0 with a result nothing counts, and every rerun looped; it fails (failed.json, exit 1)."""
    from baselines.snip import Snip
    from suite.run import main
    monkeypatch.setattr(Snip, "start_round", lambda self, r, ctx, mask: None)  # a method that never prunes
    code = main(["--no-progress", "--method", "snip", "--out", str(tmp_path), *TINY, "train.epochs=1",
                 "wandb.mode=disabled"])
    assert (code, capsys.readouterr().err.strip().splitlines()) == (1, [
        "error: run failed: round 0's result is not valid: achieved sparsity 0.000000 (0 of 6816 weights pruned) "
        "is not its target 0.900000 (6134 pruned by the exact-count rule)"])
    [folder] = tmp_path.glob("*/seed_42")
    assert json.loads((folder / "failed.json").read_text())["reason"].startswith("round 0's result is not valid")
    assert not (folder / "result.json").exists()


# --- budgets in optimizer steps, AdamW, warm-up + cosine, clipping (in process, 8 steps per epoch) ---

def _runner(tmp_path, method="dense", *overrides):
    from accelerate import Accelerator
    from suite import experiment as E
    from suite.trainer import Runner
    cfg = E.load_config(None, [*TINY, "wandb.mode=disabled", *overrides], method=method)
    return Runner(cfg, tmp_path, Accelerator(cpu=True))


STEPS = ["train.steps=20", "train.optimizer=adamw", "train.lr=0.01", "train.weight_decay=0.1",
         "train.lr_schedule=warmup_cosine", "train.warmup_steps=4", "train.min_lr=0.001"]


def test_a_step_budget_trains_exactly_its_steps_and_records_the_partial_epoch(tmp_path):
    runner = _runner(tmp_path, "dense", *STEPS)
    r = runner.run(progress=False)
    records = metrics(tmp_path)
    assert [rec["steps"] for rec in records] == [8, 8, 4]  # 20 steps: two epochs and half of the third
    assert all(rec["test_accuracy"] is not None for rec in records)  # the partial epoch is evaluated too
    assert (r["steps"], r["epochs"], r["total_epochs_trained"], r["cycles"]) == (20, 2.5, 2.5, 1.0)
    opt = runner.optimizer.optimizer
    assert {int(opt.state[p]["step"]) for p in runner.model.parameters()} == {20}
    # each epoch records the learning rate of its last step: warm-up over 4 steps, cosine over 16 to 0.001
    cosine = lambda step: 0.001 + (0.01 - 0.001) * 0.5 * (1 + math.cos(math.pi * (step - 4) / 16))
    assert [rec["lr"] for rec in records] == [cosine(7), cosine(15), cosine(19)]
    # a step budget's cost: 20 steps of the global batch, three forward passes each
    assert r["train_flops"] == r["dense_cycle_flops"] == 20 * 64 * 3 * runner.flops.total


def test_adamw_decays_matrices_only(tmp_path):
    runner = _runner(tmp_path, "dense", *STEPS)
    runner.new_optimizer()
    groups = runner.optimizer.optimizer.param_groups
    assert [(g["weight_decay"], g["betas"], sorted(p.dim() for p in g["params"])) for g in groups] == [
        (0.1, (0.9, 0.999), [2, 2, 2]), (0.0, (0.9, 0.999), [1, 1, 1])]
    assert isinstance(runner.optimizer.optimizer, torch.optim.AdamW)


def test_gradient_clipping_bounds_the_masked_gradient_norm(tmp_path):
    # plain SGD (no momentum, no decay, lr 1): one step moves the weights by exactly the clipped gradient
    runner = _runner(tmp_path, "dense", "train.steps=1", "train.lr=1", "train.momentum=0", "train.weight_decay=0",
                     "train.lr_schedule=constant", "train.grad_clip=0.01")
    runner.new_optimizer()
    w = runner.weights["net.0.weight"] if "net.0.weight" in runner.weights else next(iter(runner.weights.values()))
    name = next(n for n, p in runner.weights.items() if p is w)
    mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in runner.weights.items()}
    mask[name][: w.shape[0] // 2] = False  # half the first layer pruned: no gradient there, no part in the norm
    runner.masked.install(mask, runner.optimizer)
    before = [p.detach().clone() for p in runner.model.parameters()]
    metrics_ = runner.train_epoch(0, 0)
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(runner.model.parameters(), before)))
    assert metrics_["steps"] == 1 and metrics_["grad_norm"] > 0.01  # the norm before clipping, recorded
    assert float(moved) == pytest.approx(0.01, rel=1e-5)
    assert torch.count_nonzero(w[: w.shape[0] // 2]) == 0  # pruned weights stay exactly zero


def test_one_epoch_with_updates_at_epoch_ends_is_an_error_line_not_pruning_at_init(tmp_path):
    # issue 25 case 6: a progressive schedule inside the first epoch would prune all at once
    args = ["--method", "progressive", "--out", str(tmp_path), *TINY, "train.epochs=1"]
    proc = run_cli(args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: prune.t_end: the schedule ends at epoch 0.5, before the first epoch end, where the mask is updated "
        "(prune.update_every_steps=0): it would prune all at once; set prune.update_every_steps to a number of "
        "optimizer steps, or a longer budget")
    assert list(tmp_path.iterdir()) == []  # refused by the preflight: no run folder, no W&B run


def test_one_epoch_with_step_updates_prunes_gradually_over_half_of_it(tmp_path):
    runner = _runner(tmp_path, "progressive", "train.epochs=1", "prune.update_every_steps=1",
                     "prune.target_sparsity=0.8")
    seen = []
    install = runner.masked.install  # the masks installed (a Prune is selected before it gets there)
    runner.masked.install = lambda mask, optimizer=None: seen.append(M.sparsity_of(mask)) or install(mask, optimizer)
    r = runner.run(progress=False)
    assert runner.cfg.prune.t_end == 0.5
    steps = [s for s in seen if s is not None]
    # t_end = half an epoch = step 4 of 8: the linear schedule 0.2, 0.4, 0.6, 0.8 at steps 1..4, exact counts
    total = M.count_total(runner.masked.mask)
    assert steps == [round(s * total) / total for s in (0.2, 0.4, 0.6, 0.8)]
    assert r["achieved_sparsity"] == round(0.8 * total) / total


def test_schedule_points_follow_a_step_budget(tmp_path):
    # progressive: t_end_frac 0.5 of 20 steps = 1.25 epochs; updates every 2 steps, so step 8 (1 epoch)
    # is at 0.8 of the schedule and step 10 at its end
    runner = _runner(tmp_path, "progressive", "train.steps=20", "prune.update_every_steps=2",
                     "prune.target_sparsity=0.5")
    r = runner.run(progress=False)
    total = M.count_total(runner.masked.mask)
    records = metrics(tmp_path)
    assert [rec["target_sparsity"] for rec in records] == [0.5 * 1 / 1.25, 0.5, 0.5]
    assert records[0]["prunable_remaining"] == total - round(0.4 * total)
    assert r["achieved_sparsity"] == round(0.5 * total) / total


def test_oneshot_prunes_at_its_fraction_of_a_step_budget(tmp_path):
    runner = _runner(tmp_path, "oneshot", "train.steps=20", "oneshot.dense_frac=0.25", "prune.target_sparsity=0.5")
    assert runner.method.step_interval() == 5  # the cut: step 5 of 20, inside the first epoch
    assert [runner.method.lr_at(0, s) for s in (4, 5, 19)] == [(4, 5), (0, 15), (14, 15)]  # restart at the cut
    runner.run(progress=False)
    total = M.count_total(runner.masked.mask)
    assert metrics(tmp_path)[0]["prunable_remaining"] == total - round(0.5 * total)


def test_lth_rewinds_to_a_step_inside_an_epoch_and_keeps_those_weights(tmp_path):
    common = ["train.steps=20", "train.lr_schedule=constant", "train.momentum=0"]
    runner = _runner(tmp_path / "lth", "lth", *common, "lth.rewind_step=5", "prune.target_sparsity=0.5",
                     "lth.rate=0.5")
    r = runner.run(progress=False)
    assert r["rewind_step"] == 5
    records = metrics(tmp_path / "lth")
    assert [(rec["round"], rec["steps"]) for rec in records] == [(0, 8), (0, 8), (0, 4), (1, 3), (1, 8), (1, 4)]
    assert r["total_epochs_trained"] == 2.5 + 15 / 8
    # the kept weights are round 0's after 5 steps: a dense run of 5 steps at the same constant lr
    dense = _runner(tmp_path / "dense", "dense", *common[1:], "train.steps=5")
    dense.run(progress=False)
    kept, trained = tensors(tmp_path / "lth" / "rewind.safetensors"), tensors(tmp_path / "dense" / "model.safetensors")
    assert kept.keys() == trained.keys() and all(torch.equal(kept[k], trained[k]) for k in kept)


def test_the_language_model_recipe_under_bf16_autocast(tmp_path):
    # bf16 autocast (Accelerate), AdamW, warm-up + cosine, clipping and a step budget on the same code
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from suite import experiment as E
    from suite.trainer import Runner
    AcceleratorState._reset_state(True)
    cfg = E.load_config(None, [*TINY, "wandb.mode=disabled", *STEPS, "train.precision=bf16", "train.grad_clip=0.5",
                               "prune.update_every_steps=2", "prune.target_sparsity=0.8"], method="progressive")
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True, mixed_precision="bf16"))
    try:
        r = runner.run(progress=False)
    finally:
        AcceleratorState._reset_state(True)
    assert math.isfinite(r["final_test_loss"]) and r["steps"] == 20
    assert r["prunable_total"] - r["prunable_remaining"] == round(0.8 * r["prunable_total"])
    opt = runner.optimizer.optimizer
    for name, w in runner.weights.items():
        dead = ~runner.masked.mask[name]
        assert w.dtype == torch.float32 and int(torch.count_nonzero(w.detach()[dead])) == 0
        assert int(torch.count_nonzero(opt.state[w]["exp_avg"][dead])) == 0
        assert int(torch.count_nonzero(opt.state[w]["exp_avg_sq"][dead])) == 0
    assert all(rec["grad_norm"] > 0 for rec in metrics(tmp_path))


# --- bad input and faults: one clear line and an exit code, or a recovery ------------------------

def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("case,cause", [
    ("no API key", "(UsageError: No API key configured. Use `wandb login` to log in.)"),
    ("server unreachable", "(CommError: "),
])
@pytest.mark.slow  # waits for W&B to give up
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

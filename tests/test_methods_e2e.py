"""SynFlow, RigL, SET, GMP and one-shot end to end: from the CLI on the tiny synthetic run, under a
real 2-process gloo job, and SET's bitwise resume after SIGKILL."""
import json
import subprocess
import sys

import pytest
import torch

from helpers import ROOT, TINY, env, kill_at_epoch, launch_2proc, metrics, result, run_cli, run_folder, tensors

pytestmark = pytest.mark.slow  # every test here runs the CLI or a real training run

NEW = ("synflow", "rigl", "set", "oneshot", "gmp")
# 8 steps per epoch, 4 epochs: RigL updates every 3 steps until 0.75 of training (step 24)
SETTINGS = ["prune.target_sparsity=0.9", "rigl.update_every=3", "synflow.iterations=20", "oneshot.dense_epochs=2",
            "prune.update_every_steps=3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One CLI run per new method, started together (each is mostly interpreter start-up)."""
    out = tmp_path_factory.mktemp("runs")
    procs = {m: subprocess.Popen([sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--method", m,
                                  "--out", str(out), *TINY, *SETTINGS], cwd=ROOT, env=env(), text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for m in NEW}
    folders = {}
    for method, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, (method, stderr[-2000:])
        folders[method] = run_folder(stdout)
    return folders


@pytest.mark.parametrize("method", NEW)
def test_every_new_method_reaches_the_exact_target_from_the_cli(runs, method):
    r = result(runs[method])
    n = r["prunable_total"]
    assert r["method"] == method
    assert n - r["prunable_remaining"] == round(0.9 * n)
    mask, weights = tensors(runs[method] / "mask.safetensors"), tensors(runs[method] / "model.safetensors")
    assert sum(int((~m.bool()).sum()) for m in mask.values()) == round(0.9 * n)
    for name, m in mask.items():
        assert int((weights[name][~m.bool()] != 0).sum()) == 0, name  # pruned weights are exactly zero


def test_dynamic_methods_keep_each_layer_at_its_erk_sparsity_and_rewire(runs):
    from baselines.random import random_scores
    from suite.masks import full_mask, layer_sparsity, mask_at_sparsity
    final = {m: tensors(runs[m] / "mask.safetensors") for m in ("rigl", "set")}
    shapes = {n: t.shape for n, t in final["rigl"].items()}
    # where both start: the `random` method's mask at the target under ERK (their default distribution)
    start = mask_at_sparsity(random_scores(shapes, 42), 0.9, full_mask(final["rigl"]), distribution="erk")
    for method in ("rigl", "set"):
        assert result(runs[method])["config"]["prune"]["distribution"] == "erk", method
        rows = metrics(runs[method])
        assert all(row["layer_sparsity"] == layer_sparsity(start) for row in rows), method  # never changes
        assert len(set(layer_sparsity(start).values())) == len(start)  # ERK: every layer its own sparsity
        assert any(not torch.equal(final[method][k].bool(), start[k]) for k in start), method  # rewired


def test_oneshot_is_dense_until_its_pruning_epoch(runs):
    rows = metrics(runs["oneshot"])
    n = result(runs["oneshot"])["prunable_total"]
    assert [n - row["prunable_remaining"] for row in rows] == [0, round(0.9 * n), round(0.9 * n), round(0.9 * n)]
    assert [row["target_sparsity"] for row in rows] == [0.0, 0.9, 0.9, 0.9]
    # oneshot.lr: restart: each phase its own cosine over 2 epochs, 0.05 * (1 + cos(pi * e / 2)) / 2
    assert [row["lr"] for row in rows] == pytest.approx([0.05, 0.025, 0.05, 0.025], abs=1e-15)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """All new methods in ONE 2-process launch (the launch is the expensive part)."""
    out, report = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("ranks")
    proc = launch_2proc([str(ROOT / "tests" / "ddp_train_script.py"), str(out), str(report),
                         "--methods", ",".join(NEW), *TINY, *SETTINGS, "model.name=tiny_cnn", "wandb.mode=disabled"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, report


@pytest.mark.ddp
@pytest.mark.slow
@pytest.mark.parametrize("method", NEW)
def test_every_new_method_under_two_ranks_agrees_and_hits_the_target(ddp_runs, method):
    out, report = ddp_runs
    ranks = [json.loads((report / f"{method}_rank_{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0] == ranks[1]  # identical masks (RigL/SET regrowth included), weights and zero counts
    (folder,) = [p.parent for p in out.rglob("result.json") if p.parent.parent.name.startswith(f"{method}-")]
    r = result(folder)
    assert (r["method"], r["world_size"]) == (method, 2)
    n = r["prunable_total"]
    assert n - r["prunable_remaining"] == round(0.9 * n)
    zeros = sum(ranks[0]["zeros"].values())
    if method in ("rigl", "set"):
        assert zeros >= round(0.9 * n)  # a weight regrown at 0 may still be 0 (a dead unit gives it no gradient)
    else:
        assert zeros == round(0.9 * n)


SLOW_SET = ["--method", "set", "data.name=synthetic", "data.synthetic_train=6000", "data.synthetic_shape=[1,28,28]",
            "model.name=lenet300", "train.epochs=5", "train.batch_size=50", "prune.target_sparsity=0.9"]


def test_set_resumes_bitwise_after_sigkill(tmp_path):
    straight = run_cli(["--out", str(tmp_path / "a"), *SLOW_SET])
    assert straight.returncode == 0, straight.stderr
    folder_a = run_folder(straight.stdout)

    out_b = tmp_path / "b"
    kill_at_epoch(out_b, SLOW_SET, 2)  # two rewirings behind it
    resumed = run_cli(["--out", str(out_b), *SLOW_SET])
    assert resumed.returncode == 0 and "resuming" in resumed.stderr, resumed.stderr
    folder_b = run_folder(resumed.stdout)
    for file in ("mask.safetensors", "model.safetensors"):
        a, b = tensors(folder_a / file), tensors(folder_b / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    strip = lambda rows: [{k: v for k, v in row.items() if k not in ("epoch_time_s", "examples_per_s")} for row in rows]
    assert strip(metrics(folder_a)) == strip(metrics(folder_b))
    assert result(folder_a)["final_test_accuracy"] == result(folder_b)["final_test_accuracy"]


@pytest.mark.parametrize("args, message", [
    (["rigl.drop_fraction=1.5"], "rigl.drop_fraction: must be in (0, 1), got 1.5"),
    (["rigl.t_end=0"], "rigl.t_end: must be a fraction of training in (0, 1], got 0.0"),
    (["rigl.update_every=0"], "rigl.update_every: must be at least 1, got 0"),
    (["set.drop_fraction=0"], "set.drop_fraction: must be in (0, 1), got 0.0"),
    (["synflow.iterations=0"], "synflow.iterations: must be at least 1, got 0"),
    (["oneshot.dense_epochs=4"], "oneshot.dense_epochs: must be in [1, 3] (train.epochs is 4), got 4"),
    (["oneshot.lr=rewind"], "oneshot.lr: 'rewind' is not one of restart, continue"),
])
def test_bad_settings_name_the_key(args, message):
    from suite.errors import ConfigError
    from suite.experiment import load_config
    method = args[0].split(".")[0]
    with pytest.raises(ConfigError) as e:
        load_config(None, [*TINY, *args], method=method)
    assert str(e.value) == message


def test_a_bad_setting_from_the_cli_is_one_line_and_exit_2(tmp_path):
    proc = run_cli(["--out", str(tmp_path), "--method", "rigl", *TINY, "rigl.drop_fraction=1.5"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: rigl.drop_fraction: must be in (0, 1), got 1.5"]
    assert not any(tmp_path.iterdir())


def test_help_lists_the_new_settings_with_their_defaults():
    from suite.experiment import help_lines
    lines = help_lines()
    for start in ("  synflow.iterations (int) = 100  # ", "  rigl.update_every (int) = 100  # ",
                  "  rigl.t_end (float) = 0.75  # ", "  rigl.drop_fraction (float) = 0.3  # ",
                  "  set.drop_fraction (float) = 0.3  # ", "  oneshot.dense_epochs (int | None) = null  # ",
                  '  oneshot.lr (str) = "restart"  # '):
        assert any(line.startswith(start) for line in lines), start


def test_gmp_is_progressive_with_zhu_and_gupta_defaults(runs):
    from suite.experiment import load_config
    gmp = load_config(None, [], method="gmp").prune
    assert (gmp.schedule, gmp.distribution, gmp.update_every_steps) == ("cubic", "uniform", 100)
    preset = load_config("configs/presets/gmp.yaml")
    assert preset.method == "progressive"
    assert (preset.prune.schedule, preset.prune.distribution, preset.prune.update_every_steps) == ("cubic", "uniform", 10)
    rows = metrics(runs["gmp"])
    # cubic to 0.9 over t_end = 2 epochs: s(1) = 0.9 - 0.9 * (1 - 1/2)^3
    assert [row["target_sparsity"] for row in rows] == pytest.approx([0.7875, 0.9, 0.9, 0.9], abs=1e-12)
    r = result(runs["gmp"])
    sizes = {n: m.numel() for n, m in tensors(runs["gmp"] / "mask.safetensors").items()}
    for name, s in r["layer_sparsity"].items():  # uniform: every layer at 0.9 up to one weight
        assert abs(s * sizes[name] - 0.9 * sizes[name]) <= 1, name

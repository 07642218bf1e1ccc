"""Real 2-process CPU jobs (gloo): ranks agree on masks and weights; a lone-process launch fails loudly."""
import json

import pytest

from helpers import ROOT, launch_2proc, result

pytestmark = [pytest.mark.ddp, pytest.mark.slow]  # every test here launches 2 processes

TINY_DDP = ["data.name=synthetic", "model.name=tiny_cnn", "train.epochs=3", "train.batch_size=64",
            "train.lr=0.05", "prune.target_sparsity=0.8", "prune.t_end=2", "prune.update_every_steps=3"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out, report = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("ranks")
    proc = launch_2proc([str(ROOT / "tests" / "ddp_train_script.py"), str(out), str(report), *TINY_DDP],
                        WANDB_MODE="offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, report


def test_ranks_hold_identical_masks_and_weights(ddp_run):
    _, report = ddp_run
    ranks = [json.loads((report / f"rank_{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["mask"] == ranks[1]["mask"]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["zeros"] == ranks[1]["zeros"]


def test_two_process_run_hits_the_exact_target(ddp_run):
    out, report = ddp_run
    folder = next(out.rglob("result.json")).parent
    r = result(folder)
    assert r["world_size"] == 2
    n = r["prunable_total"]
    assert n - r["prunable_remaining"] == round(0.8 * n)
    zeros = json.loads((report / "rank_0.json").read_text())["zeros"]
    assert sum(zeros.values()) == round(0.8 * n)


def test_lr_is_stepped_once_per_epoch_not_once_per_process(ddp_run):
    import math
    out, _ = ddp_run
    rows = [json.loads(line) for line in next(out.rglob("metrics.jsonl")).read_text().splitlines()]
    assert [row["lr"] for row in rows] == [0.05 * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in range(3)]


def test_wandb_offline_run_written_once_by_the_main_process(ddp_run):
    out, _ = ddp_run
    runs = sorted(p for p in out.rglob("offline-run-*") if p.is_dir())
    assert len(runs) == 1
    (data_file,) = runs[0].glob("*.wandb")
    raw = data_file.read_bytes()  # protobuf records: logged keys and run settings appear verbatim
    folder = next(out.rglob("result.json")).parent
    experiment = result(folder)["experiment"]
    for needle in (f"tiny_cnn-synthetic-progressive-s0.8-{experiment}",  # the group: model, data, method, ...
                   f'"{experiment}"',                                 # the experiment hash, in the config
                   f"progressive-s0.8-{experiment}-seed42",           # the run name
                   "test_accuracy", "target_sparsity", "layer_sparsity/conv1.weight", "achieved_sparsity"):
        assert needle.encode() in raw, needle


def test_multi_process_launch_without_cpu_flag_fails_loudly(tmp_path):
    # two processes, no GPU, no ACCELERATE_USE_CPU: each would train alone as world size 1
    proc = launch_2proc([str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(tmp_path),
                         "data.name=synthetic", "model.name=tiny_mlp", "train.epochs=2"], use_cpu=False)
    assert proc.returncode != 0
    assert proc.stderr.count("error: launched as 2 processes but Accelerate sees a world size of 1") == 1
    assert "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2" in proc.stderr
    assert not list(tmp_path.rglob("result.json"))


BASELINES = ("snip", "grasp", "lth", "random", "dense")
QUICK_DATA = ["data.name=mnist1d", "model.name=lenet300", "train.epochs=1", "train.batch_size=128",
              "train.lr=0.05", "prune.target_sparsity=0.75", "lth.rate=0.5", "wandb.mode=disabled"]


@pytest.fixture(scope="module")
def baselines_ddp(tmp_path_factory):
    out, report = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("ranks")
    proc = launch_2proc([str(ROOT / "tests" / "ddp_train_script.py"), str(out), str(report),
                         "--methods", ",".join(BASELINES), *QUICK_DATA], WANDB_MODE="disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, report


@pytest.mark.parametrize("method", BASELINES)
def test_every_baseline_runs_as_a_2_process_job_on_the_quick_start_data(baselines_ddp, method):
    out, report = baselines_ddp
    ranks = [json.loads((report / f"{method}_rank_{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0] == ranks[1]  # identical masks, weights and zero counts on both ranks
    (folder,) = [p.parent for p in out.rglob("result.json") if p.parent.parent.name.startswith(f"{method}-")
                 and p.parent.name == "seed_42"]
    r = result(folder)
    assert (r["method"], r["dataset"], r["world_size"]) == (method, "mnist1d", 2)
    n = r["prunable_total"]
    expected_zeros = 0 if method == "dense" else round(0.75 * n)
    assert n - r["prunable_remaining"] == expected_zeros == sum(ranks[0]["zeros"].values())


def test_lth_under_ddp_keeps_every_round(baselines_ddp):
    out, _ = baselines_ddp
    (folder,) = [p.parent for p in out.rglob("result.json") if p.parent.parent.name.startswith("lth-")
                 and p.parent.name == "seed_42"]
    rounds = [result(folder / f"round_{r}") for r in range(3)]  # rate 0.5 to 0.75: 2 levels, 3 rounds
    n = rounds[0]["prunable_total"]
    assert [n - x["prunable_remaining"] for x in rounds] == [0, round(0.5 * n), round(0.75 * n)]
    assert result(folder)["total_epochs_trained"] == 3


def test_ranks_that_compute_different_masks_stop_with_a_clear_error(tmp_path):
    proc = launch_2proc([str(ROOT / "tests" / "ddp_mismatch_script.py"), str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank_{i}.json").read_text()) for i in (0, 1)]
    for r in ranks:
        assert r["agreed"] == [True, False, True, True]
        assert r["outcome"].startswith("the mask computed by each rank differs across ranks")


# --- issue 25 case 23: the process count is science, in the hash (world size 1 keeps its hash) -------

ONE_EPOCH = ["data.name=synthetic", "model.name=tiny_mlp", "train.epochs=2", "train.batch_size=64",
             "train.lr=0.05", "prune.target_sparsity=0.8", "prune.t_end=1"]


def test_a_two_process_run_after_a_one_process_run_is_its_own_experiment(tmp_path):
    """Before: the README's DDP command after the quick start said "already finished" (the hash ignored the
    process count) and a 2-process run would have shared a folder with the 1-process result. Now it runs in
    a folder of its own; the global batch and sample order are the same, so its first epoch matches the
    1-process run to float rounding (the runs part later, where pruning thresholds meet near-ties)."""
    from helpers import metrics, run_cli, run_folder

    from suite import experiment as E
    single = run_cli(["--out", str(tmp_path), *ONE_EPOCH])
    assert single.returncode == 0, single.stderr
    proc = launch_2proc([str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(tmp_path), *ONE_EPOCH])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already finished" not in proc.stderr
    assert "threads: 1 per process (OMP_NUM_THREADS)" in proc.stderr.splitlines()  # was silent under the launcher
    one, two = run_folder(single.stdout), run_folder(proc.stdout)
    cfg = E.load_config(None, ONE_EPOCH)
    assert one == E.run_dir(cfg, tmp_path) and E.experiment_hash(cfg) == result(one)["experiment"]
    two_cfg = E.with_processes(cfg, 2)
    assert two == E.run_dir(two_cfg, tmp_path) != one
    assert (result(two)["experiment"], result(two)["world_size"]) == (E.experiment_hash(two_cfg), 2)
    assert result(two)["config"]["train"]["processes"] == 2 and result(one)["config"]["train"]["processes"] == 1
    first = metrics(one)[0], metrics(two)[0]
    assert abs(first[0]["train_loss"] - first[1]["train_loss"]) <= 1e-6 * first[0]["train_loss"]
    assert first[0]["prunable_remaining"] == first[1]["prunable_remaining"]


def test_a_config_naming_another_process_count_than_the_launch_is_one_error_line(tmp_path):
    from helpers import run_cli
    proc = run_cli(["--out", str(tmp_path), *ONE_EPOCH, "train.processes=2"])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: train.processes: 2, but this run was launched as 1 process (launch with accelerate launch "
        "--num_processes 2, or leave train.processes out: the launcher sets it)"]
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


# the language-model recipe: a step budget ending inside an epoch (8 steps each), AdamW, warm-up +
# cosine and a clip small enough to bite on every step; an MLP: no BatchNorm, whose half-batch statistics
# would make the two ranks' gradients differ from one process's
LM_DDP = ["data.name=synthetic", "model.name=tiny_mlp", "train.steps=12", "train.batch_size=64",
          "train.optimizer=adamw", "train.lr=0.01", "train.weight_decay=0.1", "train.lr_schedule=warmup_cosine",
          "train.warmup_steps=3", "train.grad_clip=0.05", "prune.target_sparsity=0.8", "prune.t_end_frac=0.5",
          "prune.update_every_steps=2", "wandb.mode=disabled"]


def test_clipping_under_ddp_sees_the_global_gradient_norm(tmp_path):
    from accelerate import Accelerator
    from suite import experiment as E
    from suite.trainer import Runner
    out, report = tmp_path / "runs", tmp_path / "ranks"
    report.mkdir()
    proc = launch_2proc([str(ROOT / "tests" / "ddp_train_script.py"), str(out), str(report), *LM_DDP],
                        WANDB_MODE="disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((report / f"rank_{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["mask"] == ranks[1]["mask"]
    two = [json.loads(line) for line in next(out.rglob("metrics.jsonl")).read_text().splitlines()]
    one = Runner(E.load_config(None, LM_DDP), tmp_path / "one", Accelerator(cpu=True))
    one.run(progress=False)
    single = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [r["steps"] for r in two] == [r["steps"] for r in single] == [8, 4]
    assert [r["lr"] for r in two] == [r["lr"] for r in single]
    # the norm each rank clips by is the whole batch's (DDP averages the gradients first): as one process's
    for a, b in zip(two, single):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4) and a["grad_norm"] > 0.05

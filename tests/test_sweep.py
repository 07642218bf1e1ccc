"""launch/sweep.py: grid expansion with exact counts, the schema's errors, run-folder states, and real
sweeps of suite/run.py on synthetic data (twice, interrupted, NaN, locked, SLURM requeue, 2-process DDP)."""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from helpers import ROOT, a_file, cli, copy_run, env, one_error
import launch as S
from suite.config import SEEDS
from suite.errors import ConfigError
from suite.exits import EXIT_BAD_INPUT, EXIT_FAILED
from suite.experiment import load_config, parse_override, run_dir
from suite.results import RunLock, lock_held

SWEEP = [sys.executable, str(ROOT / "launch" / "sweep.py")]

# every run takes a second or two: a tiny MLP on the synthetic dataset, no W&B
BASE = """\
method: progressive
data: {name: synthetic}
model: {name: tiny_mlp}
train: {epochs: 2, batch_size: 64, lr: 0.05}
prune: {t_end: 1}
wandb: {mode: disabled}
"""


def write_sweep(folder: Path, body: str, name: str = "study") -> Path:
    """A sweep file over the synthetic base config, written into `folder`."""
    (folder / "base.yaml").write_text(BASE)
    path = folder / f"{name}.yaml"
    path.write_text(f"# python launch/sweep.py {path}\nbase: {folder / 'base.yaml'}\n" + textwrap.dedent(body))
    return path


def run_sweep(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*SWEEP, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env())


def labels(runs) -> list[str]:
    return [r.label.split("-")[0] + f" s{r.cfg.prune.target_sparsity:g} seed {r.cfg.seed}" for r in runs]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until a run has written `path` (its first epoch), failing fast if the process ended."""
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"process ended (exit {proc.returncode}) before {path} appeared"
        assert time.time() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def metric_epochs(folder: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


# --- the shipped sweep files -------------------------------------------------------------------

SHIPPED = {  # file: (grid points, runs, {method: runs})
    "resnet18_sparsity": (70, 40, {"progressive": 35, "dense": 5}),
    "resnet18_vs_lth": (10, 10, {"progressive": 5, "lth": 5}),
    "vgg_like_vs_snip": (10, 10, {"progressive": 5, "snip": 5}),
    "vgg19_vs_grasp": (10, 10, {"progressive": 5, "grasp": 5}),
    "lenet300_mnist": (30, 25, {"progressive": 10, "lth": 5, "snip": 10}),
    # the common protocol grid (10 methods x 2 sparsities + gmp), the init grid (5 methods at 98% from PyTorch's
    # init) and the authors' distributions at 98% (rigl, set: ERK; gmp: uniform)
    "lenet300_mnist_cpu": (150, 140, {"progressive": 15, "dense": 5, "random": 15, "snip": 15, "grasp": 15,
                                      "lth": 5, "synflow": 15, "rigl": 15, "set": 15, "gmp": 15, "oneshot": 10}),
    "lenet300_mnist_protocol": (25, 25, {"lth": 5, "progressive": 10, "dense": 5, "snip": 5}),
    "quickstart": (33, 33, {m: 3 for m in ("progressive", "dense", "random", "snip", "grasp", "lth", "synflow", "rigl",
                                           "set", "gmp", "oneshot")}),
    "quickstart_ablations": (45, 0, {}),  # 15 sources x 3 kinds; no source is finished in a fresh folder
    # the 98% common-protocol results of 6 methods (LTH's chain: its rounds at 78.9% and 98%): 35 sources x 3 kinds
    "lenet300_mnist_ablations": (90, 0, {}),  # 30 sources x 3 kinds: LTH's chain at its 98% round only
    # 2:4 (global), channel and its unstructured control (global, and per layer)
    "lenet300_mnist_structure": (50, 50, {"progressive": 50}),
    # issue 23's cells: the research's claims under both inits at 160 epochs with 10 seeds (part 2's 5 kaiming
    # seeds listed again, skipped where they are finished) and the family's two LTH controls at the same 10 seeds
    # (5 of each shared with the cpu and protocol sweeps), LTH's budget in three allocations with dense controls,
    # the fair protocol (classifier kept dense for all; dense merges its 2 sparsities), the schedule cells, the
    # equal-FLOPs cells, the ticket ablations (40 and 10 sources x 4 kinds) and structure at its own sparsity
    "lenet300_mnist_claims": (100, 100, {"progressive": 40, "snip": 20, "dense": 20, "lth": 20}),
    "lenet300_mnist_lth_budget": (30, 30, {"progressive": 5, "dense": 15, "lth": 10}),
    "lenet300_mnist_fair": (110, 100, {"lth": 5, "progressive": 10, "dense": 5, "random": 10, "snip": 10, "grasp": 10,
                                       "synflow": 10, "rigl": 10, "set": 10, "oneshot": 10, "gmp": 10}),
    "lenet300_mnist_schedule": (60, 60, {"progressive": 30, "gmp": 10, "synflow": 10, "rigl": 10}),
    "lenet300_mnist_equal_flops": (45, 45, {"snip": 15, "synflow": 10, "rigl": 10, "gmp": 10}),
    "lenet300_mnist_tickets": (160, 0, {}),
    "lenet300_mnist_tickets_protocol": (40, 0, {}),
    "lenet300_mnist_structure_own": (30, 30, {"progressive": 30}),
    # the GPT arm: 11 methods at 80% of the block matrices, 9 under 2:4 at 50%, progressive at LTH's 9,000 steps,
    # dense at nanoGPT's 2,000 and at progressive's 9,000 (the schedule control)
    "gpt_shakespeare": (115, 115, {"lth": 5, "progressive": 15, "dense": 15,
                                   **{m: 10 for m in ("random", "snip", "grasp", "synflow", "rigl", "set", "gmp",
                                                      "oneshot")}}),
}
SHIPPED_SEEDS = {"quickstart": {42, 123, 456}, "lenet300_mnist_claims": {42, 123, 456, 789, 999, 1, 2, 3, 4, 5}}


def test_every_shipped_sweep_is_listed_and_starts_with_its_command():
    files = sorted(p.stem for p in (ROOT / "configs" / "sweeps").glob("*.yaml"))
    assert files == sorted(SHIPPED)
    for name in files:
        first = (ROOT / "configs" / "sweeps" / f"{name}.yaml").read_text().splitlines()[0]
        assert first.startswith(f"# python launch/sweep.py configs/sweeps/{name}.yaml"), first


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_sweeps_expand_to_exact_counts(name, tmp_path):
    points, n_runs, per_method = SHIPPED[name]
    expansion = S.expand(S.load_sweep(ROOT / "configs" / "sweeps" / f"{name}.yaml"), tmp_path)
    assert expansion.points == points
    assert len(expansion.runs) == n_runs
    counts = {}
    for run in expansion.runs:
        counts[run.cfg.method] = counts.get(run.cfg.method, 0) + 1
    assert counts == per_method
    assert len({r.dir for r in expansion.runs}) == n_runs
    assert [r.index for r in expansion.runs] == list(range(n_runs))
    seeds = {r.cfg.seed for r in expansion.runs}
    assert seeds == (set() if name.endswith(("_ablations", "_tickets", "_tickets_protocol"))
                     else SHIPPED_SEEDS.get(name, set(SEEDS)))


def test_issue_23_cells_train_what_their_headers_say(tmp_path):
    """The epochs per cycle, LTH rates and schedules of the new cells, and each header's epoch count."""
    def cells(name):
        return S.expand(S.load_sweep(ROOT / "configs" / "sweeps" / f"{name}.yaml"), tmp_path / name).runs
    budget = {(r.cfg.method, r.cfg.lth.rate, r.cfg.train.epochs, r.cfg.prune.target_sparsity)
              for r in cells("lenet300_mnist_lth_budget")}
    assert budget == {("progressive", 0.2, 380, 0.98), ("dense", 0.2, 380, 0.0), ("lth", 0.789, 80, 0.789),
                      ("lth", 0.405, 40, 0.789), ("dense", 0.2, 80, 0.0), ("dense", 0.2, 40, 0.0)}
    from baselines.lth import lth_levels
    assert (lth_levels(0.789, 0.789), lth_levels(0.405, 0.789), lth_levels(0.2, 0.789)) == (1, 3, 7)  # 2x80, 4x40, 8x20
    schedules = {(r.cfg.prune.schedule, r.cfg.prune.update_every_steps, r.cfg.train.epochs)
                 for r in cells("lenet300_mnist_schedule") if r.cfg.method == "progressive"}
    assert schedules == {(s, u, e) for s, u in (("linear", 100), ("cubic", 0), ("exponential", 0)) for e in (20, 160)}
    assert all(r.cfg.prune.keep_last_dense for r in cells("lenet300_mnist_fair") if r.cfg.method != "dense")
    from suite.methods import build_method
    for name, epochs in (("lenet300_mnist_claims", 18200), ("lenet300_mnist_lth_budget", 6000),
                         ("lenet300_mnist_schedule", 7500), ("lenet300_mnist_equal_flops", 6675),
                         ("lenet300_mnist_structure_own", 600), ("lenet300_mnist_fair", 3800)):
        assert sum(r.cfg.train.epochs * build_method(r.cfg).rounds() for r in cells(name)) == epochs, name


def test_resnet18_sparsity_points_and_dense_control(tmp_path):
    expansion = S.expand(S.load_sweep(ROOT / "configs" / "sweeps" / "resnet18_sparsity.yaml"), tmp_path)
    progressive = {r.cfg.prune.target_sparsity for r in expansion.runs if r.cfg.method == "progressive"}
    assert progressive == {0.70, 0.729, 0.75, 0.80, 0.85, 0.90, 0.95}
    dense = [r for r in expansion.runs if r.cfg.method == "dense"]
    assert {r.cfg.prune.target_sparsity for r in dense} == {0.0}
    # the 6 other sparsities of each dense seed land in the same folder: 30 merged points
    assert sum(len(v) for v in expansion.merged.values()) == 30
    assert all(len(expansion.merged[r.label]) == 6 for r in dense)


def test_lenet300_lth_chain_covers_both_points(tmp_path):
    expansion = S.expand(S.load_sweep(ROOT / "configs" / "sweeps" / "lenet300_mnist.yaml"), tmp_path)
    chains = [r for r in expansion.runs if r.cfg.method == "lth"]
    assert [r.cfg.prune.target_sparsity for r in chains] == [0.98] * 5
    assert all(r.covers == (0.789, 0.98) for r in chains)
    # 1 - 0.8^7 = 0.7902848 is the round nearest 78.9%; 0.8^17 = 2.25% alive needs the 18th prune
    assert S.describe_chain(chains[0]) == \
        "chain of 19 rounds covers 0.789 <- round 7 (0.7903), 0.98 <- round 18 (0.9800)"


def test_cpu_study_is_every_registered_method_at_its_budget(tmp_path):
    from suite.methods import METHODS, ablation_methods
    sweep = S.load_sweep(ROOT / "configs" / "sweeps" / "lenet300_mnist_cpu.yaml", ["data.root=../shared/data"])
    # every registered method (the ablations, which need a finished source, have a sweep of their own)
    assert {m for grid in sweep.grids for m in grid["method"]} == set(METHODS) - set(ablation_methods())
    expansion = S.expand(sweep, tmp_path)
    assert {r.cfg.prune.schedule for r in expansion.runs if r.cfg.method == "gmp"} == {"cubic"}  # Zhu & Gupta's
    assert {r.cfg.prune.schedule for r in expansion.runs if r.cfg.method == "progressive"} == {"linear"}
    assert {(r.cfg.train.epochs, r.cfg.lth.rate, r.cfg.data.root) for r in expansion.runs} == {(20, 0.2, "../shared/data")}
    assert {r.cfg.prune.t_end for r in expansion.runs if r.cfg.method == "progressive"} == {10.0}
    (chain, *_) = [r for r in expansion.runs if r.cfg.method == "lth"]
    assert S.describe_chain(chain) == "chain of 19 rounds covers 0.789 <- round 7 (0.7903), 0.98 <- round 18 (0.9800)"
    # one common distribution, except the authors' own recipes (98% only) kept as groups of their own
    own = {(r.cfg.method, r.cfg.prune.distribution) for r in expansion.runs if r.cfg.prune.distribution != "global"}
    assert own == {("rigl", "erk"), ("set", "erk"), ("gmp", "uniform")}
    assert {r.cfg.prune.target_sparsity for r in expansion.runs if r.cfg.prune.distribution != "global"} == {0.98}
    inits = {(r.cfg.method, r.cfg.prune.target_sparsity) for r in expansion.runs if r.cfg.model.init == "pytorch"}
    assert inits == {(m, 0.98) for m in ("progressive", "snip", "grasp", "synflow", "random")}


def test_protocol_study_is_the_stated_budget_with_an_equal_budget_lth_partner(tmp_path):
    sweep = S.load_sweep(ROOT / "configs" / "sweeps" / "lenet300_mnist_protocol.yaml", ["data.root=../shared/data"])
    expansion = S.expand(sweep, tmp_path)
    cells = {(r.cfg.method, r.cfg.prune.target_sparsity, r.cfg.train.epochs, r.cfg.prune.t_end) for r in expansion.runs
             if r.cfg.method != "lth"}
    assert cells == {("progressive", 0.789, 160, 80.0), ("progressive", 0.98, 160, 80.0), ("dense", 0.0, 160, None),
                     ("snip", 0.98, 160, None)}
    (chain, *_) = [r for r in expansion.runs if r.cfg.method == "lth"]
    # 8 cycles of 20 epochs = 160 epochs, the same budget as one 160-epoch cycle, and it reaches 98%
    assert (chain.cfg.train.epochs, chain.cfg.lth.rate) == (20, 0.43)
    assert S.describe_chain(chain) == "chain of 8 rounds covers 0.98 <- round 7 (0.9800)"


# --- grid expansion ----------------------------------------------------------------------------

def test_grid_of_two_methods_two_sparsities_two_seeds(tmp_path):
    path = write_sweep(tmp_path, """\
        axes:
          method: [progressive, dense]
          prune.target_sparsity: [0.5, 0.75]
          seed: [1, 2]
        overrides:
          train.epochs: 3
        """)
    expansion = S.expand(S.load_sweep(path), tmp_path / "runs")
    assert expansion.points == 8
    assert labels(expansion.runs) == [
        "progressive s0.5 seed 1", "progressive s0.5 seed 2", "progressive s0.75 seed 1",
        "progressive s0.75 seed 2", "dense s0 seed 1", "dense s0 seed 2"]
    first = expansion.runs[0]
    assert first.args == ("--config", str(tmp_path / "base.yaml"), "--out", str(tmp_path / "runs"),
                          "--no-progress", "--method", "progressive", "train.epochs=3",
                          "prune.target_sparsity=0.5", "seed=1")
    assert first.cfg.train.epochs == 3
    assert first.dir.parent.parent == tmp_path / "runs"
    assert S.run_command(first)[:2] == ["python", "suite/run.py"]


def test_a_list_of_grids_is_their_union_without_repeats(tmp_path):
    path = write_sweep(tmp_path, """\
        axes:
          - method: [progressive]
            seed: [1, 2]
          - method: [progressive, dense]
            seed: [2, 3]
        """)
    expansion = S.expand(S.load_sweep(path), tmp_path)
    assert expansion.points == 6
    # progressive seed 2 is in both grids: one run
    assert labels(expansion.runs) == ["progressive s0.9 seed 1", "progressive s0.9 seed 2",
                                      "progressive s0.9 seed 3", "dense s0 seed 2", "dense s0 seed 3"]


def test_lth_collapses_to_one_chain_at_the_highest_sparsity(tmp_path):
    path = write_sweep(tmp_path, """\
        axes:
          method: [lth, progressive]
          prune.target_sparsity: [0.5, 0.9, 0.8]
          seed: [1, 2]
        overrides:
          lth.rate: 0.5
        """)
    expansion = S.expand(S.load_sweep(path), tmp_path)
    assert expansion.points == 12
    assert labels(expansion.runs) == [
        "lth s0.9 seed 1", "lth s0.9 seed 2",
        "progressive s0.5 seed 1", "progressive s0.5 seed 2", "progressive s0.9 seed 1",
        "progressive s0.9 seed 2", "progressive s0.8 seed 1", "progressive s0.8 seed 2"]
    chain = expansion.runs[0]
    assert chain.covers == (0.5, 0.8, 0.9)
    assert "prune.target_sparsity=0.9" in chain.args
    # rate 0.5: 50%, 75%, 87.5% alive-halvings, then the last round prunes exactly to 90%
    assert S.chain_sparsities(chain.cfg) == [0.0, 0.5, 0.75, 0.875, 0.9]
    assert S.describe_chain(chain) == ("chain of 5 rounds covers 0.5 <- round 1 (0.5000), "
                                       "0.8 <- round 2 (0.7500), 0.9 <- round 4 (0.9000)")
    assert len(expansion.merged[chain.label]) == 2


@pytest.mark.parametrize("value, text", [
    (0.729, "0.729"), (1e30, "1.0e+30"), ("yes", "'yes'"), ([3, 8, 8], "[3, 8, 8]"), (True, "true"),
    ("synthetic", "synthetic"), (42, "42")])
def test_values_reach_run_py_unchanged(value, text):
    assert S.format_value(value) == text
    assert parse_override(f"k={text}") == ("k", value)


# --- schema errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ("axes: {seed: [1]}\nseeds: [1]\n", "unknown key 'seeds' (valid: base, axes, overrides, ablate)"),
    ("axes: {seed: [1]}\nbase: 3\n", "base: expected the path of a config file"),
    ("axes: {seed: [1]}\nbase: configs/nope.yaml\n", "base: config file not found: configs/nope.yaml"),
    ("", "axes: expected a mapping of config keys to lists of values"),
    ("axes: {seed: 42}\n", "axes.seed: expected a non-empty list of values, got 42"),
    ("axes: {seed: []}\n", "axes.seed: expected a non-empty list of values, got []"),
    ("axes: {seed: [1, 2, 1]}\n", "axes.seed: value 1 is listed twice"),
    ("axes: [{seed: [1]}, [2]]\n", "axes[1]: expected a mapping of config keys to lists of values, got [2]"),
    ("axes: {seed: [1]}\noverrides: {seed: 3}\n", "'seed' is both an axis and a fixed override; keep one"),
    ("axes: {seed: [1]}\noverrides: [1]\n", "overrides: expected a mapping of config keys to values"),
    ("axes: {train.lrr: [0.1]}\n", "(train.lrr=0.1): unknown config key 'train.lrr'"),
    ("axes: {method: [progressive, magic]}\n", "(method=magic): unknown method 'magic'"),
    ("axes: {prune.target_sparsity: [1.5]}\n", "prune.target_sparsity: must be in [0, 1), got 1.5"),
    ("axes: {seed: [1]\n", "not valid YAML"),
])
def test_schema_errors_are_one_line_naming_the_problem(tmp_path, body, message):
    (tmp_path / "base.yaml").write_text(BASE)
    base = "" if "base:" in body else f"base: {tmp_path / 'base.yaml'}\n"
    path = tmp_path / "bad.yaml"
    path.write_text(base + body)
    with pytest.raises(ConfigError) as e:
        S.expand(S.load_sweep(path), tmp_path)
    assert message in str(e.value)
    assert str(e.value).startswith(f"{path}: ")
    assert "\n" not in str(e.value)


def test_the_cli_prints_one_error_line_and_exits_2(tmp_path, capsys):
    path = write_sweep(tmp_path, "axes: {seed: [1]}\nextra: 1\n")
    assert S.main([str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {path}: unknown key 'extra' (valid: base, axes, overrides, ablate)\n"
    assert S.main([str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err == f"error: sweep file not found: {tmp_path / 'missing.yaml'}\n"
    assert S.main([str(path), "--submit"]) == 2
    assert capsys.readouterr().err == "error: --submit: only with --backend slurm\n"


def test_command_line_overrides_join_the_fixed_ones(tmp_path):
    path = write_sweep(tmp_path, "axes: {seed: [1]}\n")
    sweep = S.load_sweep(path, ["train.epochs=5", "train.lr=0.001"])
    assert sweep.overrides == {"train.epochs": 5, "train.lr": 0.001}
    assert S.expand(sweep, "runs").runs[0].args[-3:] == ("train.epochs=5", "train.lr=0.001", "seed=1")
    with pytest.raises(ConfigError, match="both an axis and a fixed override"):
        S.load_sweep(path, ["seed=3"])


# --- what run folders say ----------------------------------------------------------------------

def test_run_status_from_the_files(tmp_path):
    folder = tmp_path / "run-e" / "seed_1"  # experiment e, seed 1: the folder _finished's result names
    assert S.run_status(folder) == S.Status("pending")
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"round": 0, "epoch": 1}\n{"round": 0, "epoch": 2}\n')
    assert S.run_status(folder) == S.Status("partial", "stopped after round 0 epoch 2")
    (folder / "round_0").mkdir()
    (folder / "round_0" / "result.json").write_text("{}")
    assert S.run_status(folder) == S.Status("partial", "stopped after round 0 epoch 2; 1 rounds finished")
    (folder / "failed.json").write_text('{"status": "failed", "reason": "loss is nan"}')
    assert S.run_status(folder) == S.Status("failed", "loss is nan")
    (folder / ".lock").write_text("")  # a lock file nobody holds: not running
    assert S.run_status(folder).state == "failed"
    fd = os.open(folder / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as run.py holds it
    try:
        assert S.run_status(folder) == S.Status("running", "locked by another process")
        assert lock_held(folder)
    finally:
        os.close(fd)
    assert not lock_held(folder)
    (folder / "failed.json").unlink()
    (folder / "result.json").write_text("{}")  # not a finished result: reported, and run again
    assert S.run_status(folder) == S.Status(
        "invalid", f"{folder / 'result.json'}: lacks method, model, dataset, seed, experiment, target_sparsity, "
                   f"achieved_sparsity, final_test_accuracy; the same command runs it again")
    _finished(folder)
    assert S.run_status(folder) == S.Status("done")


def _finished(folder):
    """The files of a finished run, as the trainer writes them (result.json last)."""
    for name in ("metrics.jsonl", "mask.safetensors", "model.safetensors"):
        (folder / name).write_bytes((2).to_bytes(8, "little") + b"{}" if name.endswith(".safetensors") else b"")
    # the seed and experiment its folder names (`<...>-<experiment>/seed_<seed>`): a result counts only there
    seed = int(folder.name[len("seed_"):]) if folder.name.startswith("seed_") else 1
    (folder / "result.json").write_text(json.dumps({
        "status": "finished", "method": "dense", "model": "m", "dataset": "d", "seed": seed,
        "experiment": folder.parent.name.rsplit("-", 1)[-1],
        "target_sparsity": 0.0, "achieved_sparsity": 0.0, "final_test_accuracy": 50.0}))


def test_classify_exit_codes_and_folders(tmp_path):
    started = time.time()
    assert S.classify(75, tmp_path, ["interrupted: run the same command again"], started, False) == \
        ("interrupted", "stopped by a signal; run again to resume from the checkpoint")
    # accelerate launch reports every failing exit as 1: the stderr line says what happened
    # the folder's lock says it, not the message
    locked = [f"error: run is locked by another process: {tmp_path}", "CalledProcessError: ..."]
    with RunLock(tmp_path):
        assert S.classify(1, tmp_path, ["CalledProcessError: ..."], started, False) == ("locked", "running elsewhere")
    assert S.classify(3, tmp_path, locked[:1], started, False) == ("locked", "running elsewhere")
    assert S.classify(1, tmp_path, ["boom", "RuntimeError: CUDA out of memory"], started, False) == \
        ("failed", "exit 1: RuntimeError: CUDA out of memory")
    assert S.classify(-9, tmp_path, [], started, False) == ("failed", "killed by SIGKILL (no output on stderr)")
    assert S.classify(1, tmp_path, ["x"], started, True)[0] == "interrupted"
    (tmp_path / "failed.json").write_text('{"status": "failed", "reason": "training loss became nan"}')
    assert S.classify(1, tmp_path, ["x"], started, False) == ("failed", "training loss became nan")
    # a failed.json older than this attempt is not its reason
    os.utime(tmp_path / "failed.json", (started - 60, started - 60))
    assert S.classify(1, tmp_path, ["y"], started, False) == ("failed", "exit 1: y")
    (tmp_path / "result.json").write_text("{}")  # not a result: the run did not finish
    assert S.classify(0, tmp_path, ["x"], started, False)[0] == "failed"
    _finished(tmp_path)
    assert S.classify(1, tmp_path, ["torchrun noise"], started, False) == ("done", "")


def test_gpu_slots_never_share_a_gpu():
    assert S.visible_gpus(None, 4) == ["0", "1", "2", "3"]
    assert S.visible_gpus("3, 5,6", 8) == ["3", "5", "6"]  # CUDA_VISIBLE_DEVICES wins
    assert S.gpu_slots(2, 1, ["0", "1", "2", "3"]) == ["0", "1"]  # local --gpus 2
    assert S.gpu_slots(2, 3, [str(i) for i in range(8)]) == ["0,1,2", "3,4,5"]  # accelerate --gpus 3 --jobs 2
    assert S.gpu_slots(1, 2, ["3", "5"]) == ["3,5"]
    with pytest.raises(ConfigError, match=r"^2 x 2 GPUs asked for, but only 3 visible$"):
        S.gpu_slots(2, 2, ["0", "1", "2"])


# --- launch commands and files ----------------------------------------------------------------

def test_accelerate_commands_and_config_files(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file
    run = S.expand(S.load_sweep(write_sweep(tmp_path, "axes: {seed: [1]}\n")), "runs").runs[0]
    argv, extra = S.accelerate_command(run, 2, gpus_present=False)
    assert argv[:8] == ["accelerate", "launch", "--config_file", "launch/accelerate/cpu_2proc.yaml",
                        "--multi_gpu", "--num_processes", "2", "suite/run.py"]
    assert argv[8:] == list(run.args) and extra == {"ACCELERATE_USE_CPU": "1"}
    assert S.accelerate_command(run, 1, True)[0][3:6] == ["launch/accelerate/single_gpu.yaml", "--num_processes", "1"]
    assert S.accelerate_command(run, 4, True)[0][3:6] == \
        ["launch/accelerate/one_node_8gpu.yaml", "--num_processes", "4"]
    assert S.accelerate_command(run, 1, False)[0][3:7] == \
        ["launch/accelerate/cpu_2proc.yaml", "--cpu", "--num_processes", "1"]
    expected = {"single_gpu": ("NO", 1, False), "one_node_8gpu": ("MULTI_GPU", 8, False),
                "multi_node": ("MULTI_GPU", 16, False), "cpu_2proc": ("MULTI_GPU", 2, True)}
    assert sorted(p.stem for p in (ROOT / "launch" / "accelerate").glob("*.yaml")) == sorted(expected)
    for name, (kind, processes, cpu) in expected.items():
        cfg = load_config_from_file(str(ROOT / "launch" / "accelerate" / f"{name}.yaml"))
        assert (cfg.distributed_type.value, cfg.num_processes, cfg.use_cpu) == (kind, processes, cpu)
    assert S.executable(argv)[:3] == [sys.executable, "-m", "accelerate.commands.launch"]


def test_slurm_scripts_parse_and_hold_the_array(tmp_path, capsys):
    path = write_sweep(tmp_path, "axes: {method: [progressive, dense], prune.target_sparsity: [0.5, 0.75], "
                                 "seed: [1, 2]}\n")
    out = tmp_path / "runs"
    assert S.main([str(path), "--out", str(out), "--backend", "slurm", "--jobs", "3", "--gpus", "2"]) == 0
    script = out / "sweeps" / "study" / "array.sbatch"
    assert capsys.readouterr().out.startswith(f"wrote {script}: job array of 6 runs (--array=0-5%3)\n")
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-5%3\n" in text and "#SBATCH --gpus-per-node=2\n" in text
    assert "#SBATCH --signal=B:TERM@120\n" in text and "#SBATCH --requeue\n" in text
    assert re.findall(r"@[A-Z]+@|^#\|", text, re.M) == []  # every field filled, template notes gone
    for i, run in enumerate(S.expand(S.load_sweep(path), out, str(out)).runs):
        assert f"    {i}) run_dir={run.dir}\n" in text
        assert S.shell_line(S.accelerate_command(run, 2, True)[0]) in text
    for name in ("sweep_array.sbatch", "multinode.sbatch"):
        assert subprocess.run(["bash", "-n", str(ROOT / "launch" / "slurm" / name)]).returncode == 0
    multinode = (ROOT / "launch" / "slurm" / "multinode.sbatch").read_text()
    for needed in ('--machine_rank "$SLURM_NODEID"', 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1',
                   "--signal=B:TERM@120", "#SBATCH --requeue", "scontrol requeue"):
        assert needed in multinode


def test_print_and_dry_run_list_the_runs(tmp_path, capsys):
    path = write_sweep(tmp_path, "axes: {method: [progressive, dense], prune.target_sparsity: [0.5, 0.75]}\n")
    out = tmp_path / "runs"
    runs = S.expand(S.load_sweep(path), out, str(out)).runs
    (runs[1].dir).mkdir(parents=True)
    _finished(runs[1].dir)
    (runs[2].dir).mkdir(parents=True)
    (runs[2].dir / "failed.json").write_text('{"status": "failed", "reason": "loss is nan"}')
    assert S.main([str(path), "--out", str(out), "--backend", "print"]) == 0
    assert capsys.readouterr().out.splitlines() == [S.shell_line(S.run_command(runs[0]))]
    assert S.main([str(path), "--out", str(out), "--backend", "print", "--retry-failed"]) == 0
    assert capsys.readouterr().out.splitlines() == [S.shell_line(S.run_command(r)) for r in (runs[0], runs[2])]
    assert S.main([str(path), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"sweep {path}: 4 grid points -> 3 runs"
    assert lines[1] == f"  0 pending  {runs[0].label}"
    assert lines[2] == f"  1 done     {runs[1].label}"
    assert lines[3] == (f"  2 failed   {runs[2].label}  (loss is nan; also prune.target_sparsity=0.75 "
                        "(dense does not read them))")
    assert lines[4:] == ["status: 1 done, 0 running, 1 failed, 0 invalid, 0 partial, 1 pending",
                         "work left: 2 runs, 4 epochs (running and partial runs counted whole); no finished run of "
                         "this sweep times them yet",
                         "would start 1 runs with backend local"]
    done = json.loads((runs[1].dir / "result.json").read_text())
    (runs[1].dir / "result.json").write_text(json.dumps({**done, "wall_time_s": 3.0}))  # 1.5 s per epoch
    assert S.main([str(path), "--out", str(out), "--dry-run", "--jobs", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[5] == (  # 2 runs x 2 epochs x 1.5 s over 2 slots
        "work left: 2 runs, 4 epochs (running and partial runs counted whole); this sweep's finished runs trained "
        "1.5 s per epoch: about 0 min 03 s on 2 job slots, plus each run's few seconds of start-up")
    assert not (out / "sweeps").exists()  # a dry run writes nothing


# --- real sweeps -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_passes(tmp_path_factory):
    """2 methods x 2 sparsities x 2 seeds (6 runs: dense ignores the sparsity) plus one run whose
    learning rate makes the loss NaN, swept twice."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder, """\
        axes:
          - method: [progressive, dense]
            prune.target_sparsity: [0.5, 0.75]
            seed: [1, 2]
          - method: [progressive]
            train.lr: [1.0e+30]
            seed: [1]
        """)
    out = folder / "runs"
    first = run_sweep(str(path), "--out", str(out), "--jobs", "2")  # two at a time, one core each
    second = run_sweep(str(path), "--out", str(out))
    return path, out, first, second, S.expand(S.load_sweep(path), out, str(out)).runs


@pytest.mark.slow  # real sweeps of real runs
def test_first_pass_runs_everything_and_reports_the_nan_run(two_passes):
    path, out, first, _, runs = two_passes
    assert first.returncode == 1, first.stderr
    nan = runs[-1]
    reason = "training loss became nan in round 0 epoch 1 (lr 1e+30): the run diverged"
    summary = first.stdout[first.stdout.index("sweep study:"):].splitlines()
    assert summary[0] == "sweep study: 6 done, 0 skipped, 1 failed"
    assert sorted(line.split(" (")[0] for line in summary[1:7]) == sorted(f"  done: {r.label}" for r in runs[:6])
    assert summary[7:] == [f"  failed: {nan.label}: {reason}"]
    for run in runs[:6]:
        result = json.loads((run.dir / "result.json").read_text())
        assert (result["method"], result["seed"], result["target_sparsity"]) == \
            (run.cfg.method, run.cfg.seed, run.cfg.prune.target_sparsity)
    assert not (nan.dir / "result.json").exists()
    log = (out / "sweeps" / "study" / "sweep.log").read_text()
    assert f"failed {nan.label} exit 1 after" in log and reason in log
    assert f"stderr: error: run failed: {reason}" in log


@pytest.mark.slow  # real sweeps of real runs
def test_second_pass_skips_everything(two_passes):
    path, out, first, second, runs = two_passes
    assert second.returncode == 1  # the NaN run is still failed
    assert "start" not in second.stdout
    lines = second.stdout.splitlines()
    assert lines[0] == "sweep study: 0 done, 7 skipped, 0 failed"
    assert lines[1:7] == [f"  skipped (finished earlier): {r.label}" for r in runs[:6]]
    assert lines[7].startswith(f"  skipped (failed earlier, see --retry-failed): {runs[6].label}: training loss")
    log = (out / "sweeps" / "study" / "sweep.log").read_text()
    assert log.count("backend local: 7 runs, 7 to start") == 1 and log.count("7 runs, 0 to start") == 1


def _export(out: Path, export: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.report", str(out), "--export", str(export), *extra],
                          capture_output=True, text=True, cwd=ROOT, env=env(), timeout=120)


@pytest.mark.slow  # real sweeps of real runs
def test_a_study_goes_on_elsewhere_from_its_export(two_passes, tmp_path, capsys):
    """The runs folder is lost (a new machine): --done EXPORT skips the 6 exported runs and times the work
    left by their recorded wall time; only the failed run, which no export holds, would start."""
    path, out, _, _, runs = two_passes
    export = tmp_path / "study.json"
    assert _export(out, export).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    assert S.main([str(path), "--out", str(elsewhere), "--done", str(export), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, r in zip(lines[1:7], runs[:6]):  # (a dense run's note goes on: "; also prune.target_sparsity=...")
        assert line.startswith(f"  {r.index} done     {r.label}  (in study.json"), line
    assert lines[7] == f"  6 pending  {runs[6].label}"
    assert lines[8] == "status: 6 done, 0 running, 0 failed, 0 invalid, 0 partial, 1 pending"
    seconds = sum(json.loads((r.dir / "result.json").read_text())["wall_time_s"] for r in runs[:6])
    rate = seconds / 12  # 6 runs x 2 epochs
    assert lines[9].startswith(f"work left: 1 runs, 2 epochs (running and partial runs counted whole); this "
                               f"sweep's finished runs trained {rate:.3g} s per epoch")
    assert S.main([str(path), "--out", str(elsewhere), "--done", str(export), "--backend", "print"]) == 0
    there = S.expand(S.load_sweep(path), elsewhere, str(elsewhere)).runs
    assert capsys.readouterr().out.splitlines() == [S.shell_line(S.run_command(there[6]))]
    code, err, _ = cli(capsys, S.main, [str(path), "--out", str(elsewhere), "--done", str(tmp_path / "no.json"),
                                        "--dry-run"])
    assert (code, err) == (EXIT_BAD_INPUT, [f"error: --done: results export not found: {tmp_path / 'no.json'}"])
    code, err, _ = cli(capsys, S.main, [str(path), "--out", str(elsewhere), "--done", str(path), "--dry-run"])
    assert code == EXIT_BAD_INPUT and len(err) == 1 and err[0].startswith(f"error: {path}: not a readable results export")
    assert not elsewhere.exists()  # a dry run writes nothing

    # an ablation sweep in the same command needs its sources' files: those 4 (progressive, seeds 1 and 2, at 0.5
    # and 0.75) are trained again; alone, the ablation sweep holds its 5 runs back (the failed run is a source
    # too) and says why
    ablate = tmp_path / "shuffles.yaml"
    ablate.write_text(f"ablate:\n  sources: {path}\n  kinds: [shuffle]\n")
    assert S.main([str(path), str(ablate), "--out", str(elsewhere), "--done", str(export), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"note: 4 runs an export holds are trained again in {elsewhere}: an ablation sweep of this "
                        f"command starts from their mask and weights, which an export does not hold")
    assert lines[9] == "status: 2 done, 0 running, 0 failed, 0 invalid, 0 partial, 5 pending"  # dense's two done
    code, err, out_lines = cli(capsys, S.main, [str(ablate), "--out", str(elsewhere), "--done", str(export),
                                                "--dry-run"])
    assert code == 0 and err == [f"note: 5 ablations held back, their sources not finished in {elsewhere}: --done "
                                 f"skips exported runs, but an export holds results, not the mask and weights an "
                                 f"ablation starts from; train the sources there first"]


@pytest.mark.slow  # real sweeps of real runs
def test_exports_of_two_machines_merge_into_the_one_study(two_passes, tmp_path):
    """The study's export cut in two (seed 1's runs, seed 2's, each as one machine would write it) and merged
    into an empty runs folder: every result back once, the report identical to the whole export's; an older
    export's per-epoch records come back in the one-list-per-key shape; a run in both with other final numbers
    counts once, the runs folder's copy, the other listed as a duplicate left out."""
    _, out, _, _, _ = two_passes
    whole = tmp_path / "whole.json"
    assert _export(out, whole).returncode == 0
    tree = json.loads(whole.read_text())
    by_seed = {s: [e for e in tree["results"] if e["result"]["seed"] == s] for s in (1, 2)}
    assert [len(v) for v in by_seed.values()] == [3, 3]
    parts = []
    for seed, entries in by_seed.items():
        part = dict(tree, results=entries, sweeps=[dict(tree["sweeps"][0], machine={"cpu": f"machine {seed}"})])
        if seed == 2:  # an export written before the one-list-per-key shape
            part["results"] = [dict(e, metrics=[dict(zip(e["metrics"], v)) for v in zip(*e["metrics"].values())])
                               for e in entries]
        parts.append(tmp_path / f"seed{seed}.json")
        parts[-1].write_text(json.dumps(part))
    parts.append(parts[0])  # the same export twice: each run kept once
    empty, merged = tmp_path / "empty", tmp_path / "merged.json"
    empty.mkdir()
    done = _export(empty, merged, *[a for p in parts for a in ("--merge", str(p))])
    assert done.returncode == 0, done.stderr
    back = json.loads(merged.read_text())
    key = lambda e: e["path"]
    assert sorted(back["results"], key=key) == sorted(tree["results"], key=key)
    assert [s["machine"]["cpu"] for s in back["sweeps"]] == ["machine 1", "machine 2"]  # seed1.json's once
    # this runs folder exported mid-way, then merged with itself at the end: its sweep log counts once
    here = json.loads(whole.read_text())["sweeps"]
    assert len(here) == 1
    early = tmp_path / "early.json"
    early.write_text(json.dumps(dict(tree, sweeps=[dict(here[0], passes=1, wall_time_s=1.0)])))
    later = tmp_path / "later.json"
    assert _export(out, later, "--merge", str(early)).returncode == 0
    assert [(s["passes"], s["wall_time_s"]) for s in json.loads(later.read_text())["sweeps"]] == \
        [(here[0]["passes"], here[0]["wall_time_s"])]
    report = lambda export: subprocess.run([sys.executable, "-m", "suite.report", str(export), "--format", "json"],
                                           capture_output=True, text=True, cwd=ROOT, env=env(), timeout=120).stdout
    assert json.loads(report(merged))["summary"] == json.loads(report(whole))["summary"]

    other = json.loads(parts[1].read_text())  # seed 2's runs trained again elsewhere: one came out otherwise
    other["results"][0]["result"]["final_test_accuracy"] += 1.0
    parts[1].write_text(json.dumps(other))
    again = _export(out, tmp_path / "again.json", "--merge", str(parts[1]))
    assert again.returncode == 0, again.stderr
    back = json.loads((tmp_path / "again.json").read_text())
    assert sorted(back["results"], key=key) == sorted(tree["results"], key=key)  # the runs folder's copies count
    (left,) = [s for s in back["skipped"] if s not in tree["skipped"]]  # beside the runs folder's failed run
    changed = other["results"][0]
    assert (left["path"], left["status"], left["seed"]) == (changed["path"], "duplicate", 2)
    assert left["reason"].startswith(f"also in seed2.json, with other final numbers there (final_test_accuracy "
                                     f"{changed['result']['final_test_accuracy']:g}, ")
    alone = subprocess.run([sys.executable, "-m", "suite.report", str(out), "--merge", str(whole)],
                           capture_output=True, text=True, cwd=ROOT, env=env(), timeout=120)
    assert (alone.returncode, alone.stderr) == (2, "error: --merge needs --export (the merged study is written "
                                                   "there, then reported from it)\n")


@pytest.mark.slow  # real sweeps of real runs
def test_interrupted_sweep_stops_its_run_and_the_next_pass_resumes_it(tmp_path):
    path = write_sweep(tmp_path, "axes: {seed: [7, 8]}\noverrides: {train.epochs: 15, data.synthetic_train: 16384}\n")
    out = tmp_path / "runs"
    run, later = S.expand(S.load_sweep(path), out).runs
    proc = subprocess.Popen([*SWEEP, str(path), "--out", str(out)], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(run.dir / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGTERM)  # as SLURM or Ctrl-C would: passed on to the run
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr
    assert stdout.splitlines()[-3:] == ["sweep study: 0 done, 0 skipped, 0 failed, 2 stopped",
                                        f"  stopped: {run.label}", f"  stopped: {later.label}"]
    assert (run.dir / "checkpoint.pt").exists() and not (run.dir / "result.json").exists()
    assert not later.dir.exists()  # never started once the sweep was told to stop
    trained = len(metric_epochs(run.dir))
    assert 1 <= trained < 15

    again = run_sweep(str(path), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "sweep study: 2 done, 0 skipped, 0 failed" in again.stdout
    assert metric_epochs(run.dir) == list(range(1, 16))  # every epoch once: resumed, not restarted
    err = (out / "sweeps" / "study" / "logs" / f"{run.label.replace('/', '.')}.err").read_text()
    resumed_at = int(re.search(rf"resuming {re.escape(str(run.dir))} at round 0 epoch (\d+)", err).group(1))
    # the checkpoint and metrics.jsonl are two files: SIGTERM can land between their writes
    assert 1 <= resumed_at < 15 and abs(resumed_at - trained) <= 1
    assert json.loads((run.dir / "result.json").read_text())["total_epochs_trained"] == 15


@pytest.mark.slow  # real sweeps of real runs
def test_a_run_locked_by_another_process_is_skipped(tmp_path, capsys):
    path = write_sweep(tmp_path, "axes: {seed: [1]}\n")
    out = tmp_path / "runs"
    (locked,) = S.expand(S.load_sweep(path), out).runs
    locked.dir.mkdir(parents=True)
    fd = os.open(locked.dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another sweep's run.py holds it
    try:
        assert S.main([str(path), "--out", str(out), "--dry-run"]) == 0
        assert f"  0 running  {locked.label}  (locked by another process)" in capsys.readouterr().out
        proc = run_sweep(str(path), "--out", str(out))
    finally:
        os.close(fd)
    assert proc.returncode == 3, proc.stderr  # issue 25: still training elsewhere is not "all finished" (0)
    assert proc.stdout.splitlines()[-2:] == ["sweep study: 0 done, 1 skipped, 0 failed",
                                             f"  skipped (running elsewhere): {locked.label}"]
    assert not (locked.dir / "result.json").exists()


@pytest.mark.slow  # real sweeps of real runs
def test_slurm_array_task_requeues_itself_on_sigterm_and_resumes(tmp_path):
    path = write_sweep(tmp_path, "axes: {seed: [5]}\noverrides: {train.epochs: 15, data.synthetic_train: 16384}\n")  # epochs long enough that SIGTERM lands mid-run on an idle machine
    out = tmp_path / "runs"
    assert S.main([str(path), "--out", str(out), "--backend", "slurm"]) == 0
    script = out / "sweeps" / "study" / "array.sbatch"
    run = S.expand(S.load_sweep(path), out).runs[0]
    # no SLURM here: a stand-in scontrol records the requeue request
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" >> {tmp_path / "scontrol.calls"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    task_env = env(SLURM_ARRAY_TASK_ID="0", SLURM_JOB_ID="4242",
                   PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=task_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(run.dir / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@120 sends before the time limit
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 4242\n"
    assert "exit 75" in stdout and f"requeueing job 4242 to resume from the checkpoint in {run.dir}" in stdout
    assert (run.dir / "checkpoint.pt").exists() and not (run.dir / "result.json").exists()

    task_env["SLURM_RESTART_COUNT"] = "1"  # SLURM starts the requeued task again
    again = subprocess.run(["bash", str(script)], cwd=tmp_path, env=task_env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert metric_epochs(run.dir) == list(range(1, 16))
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 4242\n"  # not requeued again


@pytest.mark.ddp
@pytest.mark.slow
def test_accelerate_backend_runs_a_real_two_process_job_on_cpu(tmp_path):
    path = write_sweep(tmp_path, "axes: {method: [progressive]}\noverrides: {prune.target_sparsity: 0.6}\n")
    out = tmp_path / "runs"
    proc = run_sweep(str(path), "--out", str(out), "--backend", "accelerate", "--gpus", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = S.expand(S.load_sweep(path, ["train.processes=2"]), out).runs[0]  # the process count is in the hash
    result = json.loads((run.dir / "result.json").read_text())
    assert result["world_size"] == 2 and result["config"]["train"]["processes"] == 2
    again = run_sweep(str(path), "--out", str(out), "--backend", "accelerate", "--gpus", "2")
    assert again.returncode == 0 and "0 done, 1 skipped" in again.stdout  # it finds the 2-process folder
    assert result["achieved_sparsity"] == round(0.6 * result["prunable_total"]) / result["prunable_total"]
    log = (out / "sweeps" / "study" / "sweep.log").read_text()
    assert ("ACCELERATE_USE_CPU=1 OMP_NUM_THREADS=1 accelerate launch --config_file "
            "launch/accelerate/cpu_2proc.yaml --multi_gpu --num_processes 2 suite/run.py") in log


@pytest.mark.ddp
@pytest.mark.slow
def test_multinode_script_runs_ddp_and_requeues_on_sigterm(tmp_path):
    """launch/slurm/multinode.sbatch on one stand-in node: srun runs the command here as node 0, and
    2 CPU processes stand in for the node's GPUs."""
    import socket
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nSLURM_NODEID=0 exec "$@"\n')
    (bin_dir / "scontrol").write_text('#!/bin/bash\nif [ "$1" = show ]; then echo 127.0.0.1; '
                                      f'else echo "$@" >> {tmp_path / "scontrol.calls"}; fi\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    job_env = env(PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}", SLURM_JOB_NODELIST="node1",
                  SLURM_NNODES="1", SLURM_GPUS_ON_NODE="2", SLURM_JOB_ID="77", ACCELERATE_USE_CPU="1",
                  MAIN_PORT=str(port))
    out = tmp_path / "runs"
    args = ["bash", "launch/slurm/multinode.sbatch", "--out", str(out), "--no-progress", "seed=3",
            "data.name=synthetic", "model.name=tiny_mlp", "train.epochs=15", "prune.t_end=1"]
    proc = subprocess.Popen(args, cwd=ROOT, env=job_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    folder = run_dir(load_config(None, [*args[5:], "train.processes=2"]), out)
    wait_for(folder / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout
    assert f"1 nodes x 2 GPUs, main 127.0.0.1:{port}, restart 0: {folder}" in stdout
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 77\n"
    assert (folder / "checkpoint.pt").exists() and not (folder / "result.json").exists()

    job_env["SLURM_RESTART_COUNT"] = "1"
    again = subprocess.run(args, cwd=ROOT, env=job_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert metric_epochs(folder) == list(range(1, 16))
    assert json.loads((folder / "result.json").read_text())["world_size"] == 2
    assert (tmp_path / "scontrol.calls").read_text() == "requeue 77\n"


# --- ablation sweeps ---------------------------------------------------------------------------

@pytest.mark.slow  # real sweeps of real runs
def test_an_ablation_sweep_ablates_the_finished_results_of_another(tmp_path, capsys):
    from accelerate import Accelerator
    from suite.run import main as run_main
    from suite.trainer import run_experiment
    source = write_sweep(tmp_path, """\
        axes:
          - method: [snip, progressive, dense]
            prune.target_sparsity: [0.75]
            seed: [1, 2]
          - method: [lth]
            prune.target_sparsity: [0.5, 0.75]
            lth.rate: [0.5]
            seed: [1]
        """, name="source")
    path = tmp_path / "ablations.yaml"
    path.write_text(f"# python launch/sweep.py {path}\nablate:\n  sources: {source}\n  kinds: [shuffle, invert]\n")
    out = tmp_path / "runs"
    inner = S.expand(S.load_sweep(source), out).runs
    sources = [r.dir for r in inner if r.cfg.method in ("snip", "progressive")]
    lth = next(r for r in inner if r.cfg.method == "lth")
    assert S.ablation_sources(S.load_sweep(path), out) == sources + [lth.dir / "round_1", lth.dir / "round_2"]
    # `where` keeps the sources whose settings match: the LTH chain run (lth.rate 0.5) and its rounds
    where = tmp_path / "where.yaml"
    where.write_text(f"ablate:\n  sources: {source}\n  kinds: [shuffle]\n  where: {{lth.rate: [0.5]}}\n")
    assert S.ablation_sources(S.load_sweep(where), out) == [lth.dir / "round_1", lth.dir / "round_2"]
    where.write_text(f"ablate:\n  sources: {source}\n  kinds: [shuffle]\n  where: {{seed: 2, method: [snip, lth]}}\n")
    assert S.ablation_sources(S.load_sweep(where), out) == [sources[1]]
    assert S.main([str(path), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"sweep {path}: shuffle, invert of 6 sources (0 finished) from {source} -> 0 runs"
    assert lines[1:7] == [f"  source pending: {folder}" for folder in sources + [lth.dir / "round_1", lth.dir / "round_2"]]
    assert lines[7:] == ["  held back (source not finished: run its sweep first): 12",
                         "status: 0 done, 0 running, 0 failed, 0 invalid, 0 partial, 0 pending",
                         "would start 0 runs with backend local"]

    for run in inner:  # finish SNIP seed 1, progressive seed 1 and the LTH chain (rounds 1 and 2)
        if run.cfg.seed == 1 and run.cfg.method != "dense":
            run_experiment(run.cfg, out, Accelerator(cpu=True), progress=False)
    expansion = S.expand(S.load_sweep(path), out, str(out))
    assert [(r.cfg.method, r.cfg.ablate.source_method, r.cfg.ablate.source_round, r.cfg.seed,
             r.cfg.prune.target_sparsity) for r in expansion.runs] == [
        ("shuffle", "snip", 0, 1, 0.75), ("invert", "snip", 0, 1, 0.75), ("shuffle", "progressive", 0, 1, 0.75),
        ("shuffle", "lth", 1, 1, 0.5), ("shuffle", "lth", 2, 1, 0.75)]
    assert expansion.runs[0].args == ("--out", str(out), "--no-progress", "--method", "shuffle",
                                      f"ablate.source={sources[0]}")
    not_applicable = expansion.held_back[S.NOT_APPLICABLE]
    assert [line.split(":")[0] for line in not_applicable] == [
        f"invert of {sources[2]}", f"invert of {lth.dir / 'round_1'}", f"invert of {lth.dir / 'round_2'}"]
    assert expansion.held_back[S.NOT_FINISHED] == [f"{kind} of {folder}" for folder in (sources[1], sources[3])
                                                   for kind in ("shuffle", "invert")]

    # one run of the sweep, kept to one (the machine is shared): reinit of the finished SNIP seed,
    # by the command the sweep gives run.py (in this process: no interpreter to start)
    one = tmp_path / "one.yaml"
    one.write_text(f"ablate:\n  sources: {source}\n  kinds: [reinit]\n  methods: [snip]\n")
    assert S.main([str(one), "--out", str(out), "--backend", "print"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    (run,) = S.expand(S.load_sweep(one), out, str(out)).runs
    assert line == S.shell_line(["python", "suite/run.py", *run.args])
    assert run_main(list(run.args)) == 0
    result = json.loads((run.dir / "result.json").read_text())
    assert (result["method"], result["seed"], result["target_sparsity"]) == ("reinit", 1, 0.75)
    assert result["science"]["ablate.source_experiment"] == json.loads((sources[0] / "result.json").read_text())["experiment"]
    assert S.main([str(one), "--out", str(out), "--dry-run"]) == 0
    assert "status: 1 done, 0 running, 0 failed, 0 invalid, 0 partial, 0 pending" in capsys.readouterr().out


@pytest.mark.parametrize("body, message", [
    ("ablate: {sources: x.yaml, kinds: [shuffle]}\naxes: {seed: [1]}\n",
     "axes: an ablation sweep takes its settings from its sources; give either ablate or base and axes"),
    ("ablate: [1]\n", "ablate: expected a mapping with sources, kinds and optionally methods and where"),
    ("ablate: {sources: x.yaml, kinds: [shuffle], seed: 1}\n",
     "ablate: unknown key 'seed' (valid: sources, kinds, methods, where)"),
    ("ablate: {sources: x.yaml, kinds: [shuffle], where: {prune.sparsity: [0.9]}}\n",
     "ablate.where: unknown setting 'prune.sparsity'"),
    ("ablate: {sources: x.yaml, kinds: [shuffle], where: [0.9]}\n",
     "ablate.where: expected a mapping of settings to values, e.g. {prune.target_sparsity: [0.98]}"),
    ("ablate: {kinds: [shuffle]}\n", "ablate.sources: expected a sweep file"),
    ("ablate: {sources: x.yaml, kinds: [snip]}\n", "ablate.kinds: expected a list of shuffle, reinit, invert, ticket, rewire, got ['snip']"),
    ("ablate: {sources: x.yaml, kinds: [shuffle], methods: [magic]}\n",
     "ablate.methods: expected a list of registered methods, got ['magic']"),
    ("ablate: {sources: x.yaml, kinds: [shuffle]}\noverrides: {method: dense}\n",
     "overrides: method is set by ablate (kinds, sources)"),
    ("ablate: {sources: configs/nope.yaml, kinds: [shuffle]}\n", "ablate.sources: sweep file not found: configs/nope.yaml"),
    ("ablate: {sources: /no/runs, kinds: [shuffle]}\n", "ablate.sources: /no/runs is neither a sweep file nor a runs folder"),
])
def test_ablation_sweep_errors_are_one_line(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as e:
        S.expand(S.load_sweep(path), tmp_path)
    assert str(e.value) == f"{path}: {message}" or (str(e.value).startswith(f"{path}: {message}") and "\n" not in str(e.value))


# --- issue 25: ablation sweeps that match, quote and expand as their sources ran ----------------------

def test_where_matches_each_lth_round_by_the_sparsity_it_stands_for_and_a_pattern_as_one_value(tmp_path):
    """Issue 25, case 5: `where` filtered an LTH chain by its target, so 0.75 also took the 0.5 round and
    0.5 dropped it; and `where: {prune.nm: [2, 4]}` (one pattern) matched nothing."""
    source = write_sweep(tmp_path, """\
        axes:
          - method: [lth]
            prune.target_sparsity: [0.5, 0.75]
            lth.rate: [0.5]
            seed: [1]
          - method: [snip]
            prune.target_sparsity: [0.75]
            prune.structure: [nm, unstructured]
            seed: [1]
        """, name="source")
    out = tmp_path / "runs"
    inner = S.expand(S.load_sweep(source), out).runs
    lth = next(r for r in inner if r.cfg.method == "lth")
    nm = next(r for r in inner if r.cfg.prune.structure == "nm")

    def found(where):
        path = tmp_path / "ablations.yaml"
        path.write_text(f"ablate:\n  sources: {source}\n  kinds: [shuffle]\n  where: {where}\n")
        return S.ablation_sources(S.load_sweep(path), out)

    assert found("{method: [lth], prune.target_sparsity: [0.75]}") == [lth.dir / "round_2"]
    assert found("{method: [lth], prune.target_sparsity: [0.5]}") == [lth.dir / "round_1"]
    assert found("{method: [lth], prune.target_sparsity: [0.5, 0.75]}") == [lth.dir / "round_1", lth.dir / "round_2"]
    assert found("{prune.structure: [nm], prune.nm: [2, 4]}") == [nm.dir]
    assert found("{prune.structure: [nm], prune.nm: [[1, 4], [2, 4]]}") == [nm.dir]
    assert found("{prune.structure: [nm], prune.nm: [1, 4]}") == []


def test_an_ablation_sweep_expands_quotes_and_counts_as_its_sources_ran(tmp_path, capsys):
    """Issue 25, cases 10 and 11 and a partial: the source sweep is expanded WITH the command line's
    overrides (train.lr=0.01 said "source not finished" for sources that ran); a runs folder with " #" or
    ": " reaches run.py as that path (YAML cut it: every ablation "held back", 0 runs, exit 0); and a run
    another process finished counts there, not here."""
    from accelerate import Accelerator
    from suite.run import main as run_main
    from suite.trainer import run_experiment
    source = write_sweep(tmp_path, "axes: {method: [snip], prune.target_sparsity: [0.75], seed: [1]}\n",
                         name="source")
    path = tmp_path / "ablations.yaml"
    path.write_text(f"ablate:\n  sources: {source}\n  kinds: [reinit]\n")
    out = tmp_path / "runs #1: lr"
    (inner,) = S.expand(S.load_sweep(source, ["train.lr=0.01"]), out).runs
    assert inner.cfg.train.lr == 0.01
    run_experiment(inner.cfg, out, Accelerator(cpu=True), progress=False)
    expansion = S.expand(S.load_sweep(path, ["train.lr=0.01"]), out, str(out))
    assert expansion.held_back == {}
    (run,) = expansion.runs
    assert run.cfg.ablate.source == str(inner.dir) and run.cfg.train.lr == 0.01
    assert f"ablate.source={inner.dir}" in run.args and "train.lr=0.01" in run.args
    assert run_main([*run.args, "--print-dir"]) == 0  # run.py reads the path the sweep gives it
    assert capsys.readouterr().out.strip() == str(run.dir)
    # a finished run this process did not write: run.py says "already finished"
    import time
    assert S.classify(0, inner.dir, [f"already finished (use --force to run again): {inner.dir}"], time.time(),
                      False) == ("elsewhere", "finished by another process")
    assert S.classify(0, inner.dir, [], time.time(), False) == ("done", "")
    outcome = S.Outcome(run=inner, state="elsewhere", reason="finished by another process")
    from launch.accounting import summary
    assert summary(S.load_sweep(source), [outcome], {}, []) == [
        "sweep source: 0 done, 1 skipped, 0 failed", f"  skipped (finished by another process): {inner.label}"]


# --- bad input and faults: one clear line and an exit code, or a recovery ------------------------

@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("text,part", [("", "sweep file is empty"),
                                       ("base: configs/quickstart.yaml\naxes:\n  seed: [1]\n  seed: [2]\n",
                                        "duplicate key 'seed' on line 4")])
def test_bad_sweep_file_is_one_line(text, part, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    code, err, _ = cli(capsys, S.main, [str(path), "--out", str(tmp_path / "runs"), "--dry-run"])
    assert code == EXIT_BAD_INPUT
    one_error(err, path, part)


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("where", ["is a file", "under a file"])
def test_sweep_out_that_is_a_file_or_under_one(where, tmp_path, capsys):
    f = a_file(tmp_path)
    out = f if where == "is a file" else f / "deeper" / "runs"
    code, err, _ = cli(capsys, S.main, ["configs/sweeps/quickstart.yaml", "--out", str(out)])
    assert code == EXIT_BAD_INPUT
    one_error(err, "--out", out, "is a file")
    assert f.read_text() == "keep me\n"


@pytest.mark.usefixtures("quiet")
def test_sweep_does_not_count_an_invalid_result(straight, tmp_path, capsys):
    out, folder = copy_run(straight, tmp_path)
    (folder / "result.json").write_text("{")
    status = S.run_status(folder)
    assert status.state == "invalid" and f"{folder / 'result.json'}: unreadable" in status.detail


@pytest.mark.usefixtures("quiet")
def test_a_second_sweeper_does_not_count_anothers_run_as_done(straight, tmp_path):
    """Its run.py exited 3 (locked); by the time it looks, the other sweeper's run has finished."""
    _, folder = copy_run(straight, tmp_path)
    started = time.time()
    assert S.classify(3, folder, ["error: run is locked by another process"], started, False) == \
        ("locked", "running elsewhere")
    assert S.classify(0, folder, [], started, False) == ("done", "")


@pytest.mark.usefixtures("quiet")
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


@pytest.mark.usefixtures("quiet")
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


@pytest.mark.usefixtures("quiet")
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("dry", [True, False], ids=["dry run", "run"])
def test_sweep_gpus_without_a_gpu_is_one_line(dry, tmp_path, capsys):
    code, err, _ = cli(capsys, S.main, ["configs/sweeps/quickstart.yaml", "--out", str(tmp_path / "runs"), "--gpus",
                                        "1", *(["--dry-run"] if dry else [])])
    assert code == EXIT_BAD_INPUT
    one_error(err, "--gpus 1: 0 GPUs visible here (no CUDA device); leave --gpus out to run on the CPU")


@pytest.mark.usefixtures("quiet")
def test_slurm_script_quotes_paths_and_names_with_spaces_and_command_substitution(tmp_path):
    """#SBATCH values in double quotes (sbatch reads them; bash never does), the run lines shell-quoted:
    under bash the task runs exactly the planned argv and `$(...)` never runs."""
    import shlex
    # 2 epochs: at 1, progressive's schedule would end before its first update (the preflight refuses it)
    (tmp_path / "base.yaml").write_text("data: {name: synthetic}\nmodel: {name: tiny_mlp}\ntrain: {epochs: 2}\n")
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


@pytest.mark.slow  # real sweeps of real runs
def test_several_sweep_files_run_in_order_as_one_study(tmp_path):
    """`sweep.py a.yaml b.yaml key=value`: every file is read before any run (a mistake in the last costs no
    run of the first), then each runs in turn with the same overrides, its own log and summary."""
    first = write_sweep(tmp_path, "axes: {seed: [1, 2]}\n", name="first")
    second = write_sweep(tmp_path, "axes: {method: [dense], seed: [1]}\n", name="second")
    broken = tmp_path / "broken.yaml"
    broken.write_text("axes: {seed: [1]}\ncolour: red\n")
    out = tmp_path / "runs"
    proc = run_sweep(str(first), str(broken), "--out", str(out))
    assert proc.returncode == EXIT_BAD_INPUT
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {broken}: unknown key 'colour'")
    assert not out.exists()  # nothing ran, nothing was written
    proc = run_sweep(str(first), str(second), "train.epochs=3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("sweep ")]
    assert summaries == ["sweep first: 2 done, 0 skipped, 0 failed", "sweep second: 1 done, 0 skipped, 0 failed"]
    results = sorted(out.rglob("result.json"))
    assert len(results) == 3 and {json.loads(p.read_text())["science"]["train.epochs"] for p in results} == {3}
    assert sorted(p.name for p in (out / "sweeps").iterdir()) == ["first", "second"]


@pytest.mark.slow  # real runs
def test_runs_start_longest_first(tmp_path):
    """The job slots finish together: a sweep starts its longest runs first (epochs; ties in grid order), so a long
    run is not left to train alone at the end while the other slots idle."""
    sweep = write_sweep(tmp_path, "axes: {train.epochs: [1, 3, 2], seed: [1]}\n")
    out = tmp_path / "runs"
    proc = run_sweep(str(sweep), "--out", str(out), "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    started = [line.split("start")[1].strip() for line in proc.stdout.splitlines() if "] start " in line]
    epochs = [json.loads((out / label / "config.json").read_text())["train"]["epochs"] for label in started]
    assert epochs == [3, 2, 1]

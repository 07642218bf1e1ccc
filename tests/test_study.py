"""A small real study: the trainer runs 3 methods x 3 seeds on synthetic data, then the report reads
the run folders; its numbers must equal those recomputed from the result.json files."""
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from helpers import ROOT, env

pytestmark = pytest.mark.slow  # a real study: 3 methods x 3 seeds trained

TINY = ["data.name=synthetic", "model.name=tiny_mlp", "train.epochs=3", "train.batch_size=64", "train.lr=0.05",
        "prune.target_sparsity=0.5", "wandb.mode=disabled"]  # at 0.8 random sits at chance on this tiny MLP (11-21%):
# a collapsed group, which the head-to-head shows but does not t-test
SEEDS = (42, 123, 456)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from accelerate import Accelerator

    from suite import experiment as E
    from suite.trainer import run_experiment
    out = tmp_path_factory.mktemp("study")
    accelerator = Accelerator(cpu=True)
    for method in ("progressive", "random", "dense"):
        for seed in SEEDS:
            cfg = E.load_config(None, [*TINY, f"seed={seed}"], method)
            assert run_experiment(cfg, out, accelerator, progress=False).status == "finished"
    return out


def _report(study, *args):
    proc = subprocess.run([sys.executable, "-m", "suite.report", str(study), *args], capture_output=True,
                          text=True, cwd=ROOT, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _accuracies(study, method):
    found = {}
    for path in study.rglob("result.json"):
        r = json.loads(path.read_text())
        if r["method"] == method:
            found[r["seed"]] = r["final_test_accuracy"]
    return [found[s] for s in SEEDS]


def test_summary_equals_recomputation_from_result_files(study):
    table = {row["method"]: row for row in json.loads(_report(study, "--format", "json"))["summary"]}
    assert set(table) == {"progressive", "random", "dense"}
    for method, row in table.items():
        acc = np.array(_accuracies(study, method))
        assert row["n"] == 3 and row["seeds"] == list(SEEDS)
        assert row["mean"] == pytest.approx(acc.mean(), abs=1e-12)
        assert row["sd"] == pytest.approx(acc.std(ddof=1), abs=1e-12)
        half = stats.t.ppf(0.975, 2) * acc.std(ddof=1) / np.sqrt(3)
        assert row["ci_low"] == pytest.approx(acc.mean() - half, abs=1e-9)
        assert row["ci_high"] == pytest.approx(acc.mean() + half, abs=1e-9)
    dense = np.mean(_accuracies(study, "dense"))
    assert table["progressive"]["diff_dense"] == pytest.approx(np.mean(_accuracies(study, "progressive")) - dense, abs=1e-12)
    assert table["random"]["target_sparsity"] == 0.5 and table["dense"]["target_sparsity"] == 0.0


def test_head_to_head_is_paired_over_the_same_seeds(study):
    (row,) = json.loads(_report(study, "--format", "json"))["head_to_head"]
    prog, rand = np.array(_accuracies(study, "progressive")), np.array(_accuracies(study, "random"))
    assert (row["method"], row["reference"], row["paired"]) == ("random", "progressive", True)
    assert row["diff"] == pytest.approx(rand.mean() - prog.mean(), abs=1e-12)
    assert row["welch_p"] == pytest.approx(stats.ttest_ind(rand, prog, equal_var=False).pvalue, rel=1e-9)
    assert row["paired_p"] == pytest.approx(stats.ttest_rel(rand, prog).pvalue, rel=1e-9)
    assert row["primary_p_holm"] == pytest.approx(row["paired_p"], rel=1e-12)  # one comparison: Holm is a no-op


def test_csv_markdown_latex_and_plots(study, tmp_path):
    from suite.report import split_csv
    rows = split_csv(_report(study, "--format", "csv"))["summary"]
    means = {r["method"]: float(r["mean"]) for r in rows}
    assert means["random"] == pytest.approx(np.mean(_accuracies(study, "random")), abs=1e-9)
    assert "progressive" in _report(study, "--format", "markdown")
    latex = _report(study, "--format", "latex", "--plots", str(tmp_path))
    assert "\\toprule" in latex and "\\bottomrule" in latex and "Holm" in latex
    assert sorted(p.name for p in tmp_path.glob("*.gif")) == ["comparison_animation.gif", "training_animation.gif"]
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    # trade-off, dynamics, layers, the forest plot and the accuracy-cost frontier
    assert len(pngs) == 5 and len(list(tmp_path.glob("*.pdf"))) == 5

"""The report end to end: synthetic run folders in the trainer's schema, the CLI as a subprocess."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as sps

from helpers import ROOT, cli, copy_run, env, one_error
import launch as S
from suite import report
from suite import report as R
from suite.config import DataConfig, ModelConfig, PruneConfig, TrainConfig, to_dict
from suite.errors import ConfigError
from suite.exits import EXIT_FAILED
from suite.experiment import Config, experiment_hash, run_dir, science_settings

REPO = Path(__file__).resolve().parent.parent
T_975_DF2 = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))  # t_{0.975, 2}, inverse of F(t) = 1/2 + t / (2 sqrt(2 + t^2))
LAYERS = ("fc1.weight", "fc2.weight", "fc3.weight")

# Final test accuracy (%) per seed. LTH keeps one chain per seed: rounds 0..2, round 2 is the final.
PROG_90 = {42: 92.10, 123: 92.45, 456: 91.80}
PROG_50 = {42: 92.55, 123: 92.95, 999: 92.70}     # other seeds than LTH: Welch, not paired
LTH_FINAL = {42: 91.20, 123: 91.65, 456: 91.05}   # same seeds as PROG_90: paired
LTH_ROUNDS = {0: ({42: 92.70, 123: 92.90, 456: 92.50}, 0.0), 1: ({42: 92.60, 123: 92.30, 456: 92.85}, 0.5)}
DENSE_ACC = {42: 92.80, 123: 92.65, 456: 92.95}
SNIP_ONE = {42: 90.40}                             # one seed: reported without tests


EMPTY_SAFETENSORS = (2).to_bytes(8, "little") + b"{}"  # a valid safetensors file holding no tensor
FAKE_LAYERS = {"fc1.weight": (50, 160), "fc2.weight": (10, 150), "fc3.weight": (10, 50)}  # 10,000 prunable weights


def _mask_bytes(remaining: int) -> bytes:
    """A mask of the fake study's 10,000 prunable weights with `remaining` alive (the result's own counts:
    suite.results reads them back)."""
    import numpy as np
    from safetensors.numpy import save
    alive = np.arange(10_000) < remaining
    out, start = {}, 0
    for name, shape in FAKE_LAYERS.items():
        size = shape[0] * shape[1]
        out[name] = alive[start:start + size].reshape(shape).astype(np.uint8)
        start += size
    return save(out)


def _config(method: str, sparsity: float, seed: int, epochs: int = 3, init: str = "model", **prune) -> Config:
    return Config(method=method, seed=seed, data=DataConfig(name="synthetic"),
                  model=ModelConfig(name="tiny_mlp", init=init), train=TrainConfig(epochs=epochs),
                  prune=PruneConfig(target_sparsity=sparsity, **prune))


def _layer_sparsity(sparsity: float) -> dict:
    # fc3 (the classifier) is pruned hardest at high sparsity; at 0.9 it collapses in this fake study.
    return {"fc1.weight": sparsity, "fc2.weight": sparsity * 0.8, "fc3.weight": 1.0 if sparsity >= 0.9 else sparsity}


def _result(cfg: Config, accuracy: float, target: float, rounds: int, round_index: int) -> dict:
    total, prunable = 11_000, 10_000
    remaining = round(prunable * (1 - target))
    return {
        "status": "finished", "method": cfg.method, "model": cfg.model.name, "dataset": cfg.data.name,
        "seed": cfg.seed, "experiment": experiment_hash(cfg), "science": science_settings(cfg),
        "target_sparsity": target, "achieved_sparsity": target, "final_test_accuracy": accuracy,
        "final_test_loss": 0.3, "best_test_accuracy": accuracy + 0.1, "best_test_accuracy_any_epoch": accuracy + 0.2,
        "best_epoch": 3, "params_total": total, "params_remaining": total - prunable + remaining,
        "prunable_total": prunable, "prunable_remaining": remaining, "epochs": cfg.train.epochs,
        "total_epochs_trained": cfg.train.epochs * rounds, "round": round_index, "rounds": rounds,
        "world_size": 1, "wall_time_s": 1.5,
        "layer_sparsity": _layer_sparsity(target), "collapsed_layers": ["fc3.weight"] if target >= 0.9 else [],
        "versions": {"python": "3.11", "torch": "2.14.1", "accelerate": "1.15", "suite": "0.1.0"},
        "config": to_dict(cfg),
    }


def _metrics(cfg: Config, accuracy: float, targets: list[float]) -> str:
    lines = []
    for r, target in enumerate(targets):
        for epoch in range(1, cfg.train.epochs + 1):
            s = target * epoch / cfg.train.epochs if cfg.method == "progressive" else target
            lines.append(json.dumps({
                "round": r, "epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": accuracy - 3 + epoch,
                # epoch 2 not evaluated: the plots must skip it, not draw a zero
                "test_loss": None if epoch == 2 else 0.5, "test_accuracy": None if epoch == 2 else accuracy - 3 + epoch,
                "target_sparsity": s, "sparsity": s, "threshold": 0.01, "lr": 0.1, "epoch_time_s": 0.5,
                "images_per_s": 1000.0, "layer_sparsity": _layer_sparsity(s)}))
    return "\n".join(lines) + "\n"


def _write_run(root: Path, method: str, sparsity: float, seed: int, accuracy: float, epochs: int = 3,
               init: str = "model", **prune) -> Path:
    cfg = _config(method, sparsity, seed, epochs, init, **prune)
    folder = run_dir(cfg, root)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(to_dict(cfg)))
    targets = [LTH_ROUNDS[0][1], LTH_ROUNDS[1][1], sparsity] if method == "lth" else [sparsity]
    (folder / "metrics.jsonl").write_text(_metrics(cfg, accuracy, targets))
    (folder / "result.json").write_text(json.dumps(_result(cfg, accuracy, sparsity, len(targets), len(targets) - 1)))
    (folder / "model.safetensors").write_bytes(EMPTY_SAFETENSORS)  # a run's final files (no weights here)
    (folder / "mask.safetensors").write_bytes(_mask_bytes(round(10_000 * (1 - sparsity))))
    if method == "lth":
        for r, target in enumerate(targets):
            acc = accuracy if r == len(targets) - 1 else LTH_ROUNDS[r][0][seed]
            sub = folder / f"round_{r}"
            sub.mkdir()
            (sub / "result.json").write_text(json.dumps(_result(cfg, acc, target, len(targets), r)))
            (sub / "metrics.jsonl").write_text(_metrics(cfg, acc, [target]))
            (sub / "mask.safetensors").write_bytes(_mask_bytes(round(10_000 * (1 - target))))
    return folder


def write_study(root: Path) -> None:
    """Two methods x three seeds (+ LTH rounds), dense x three, a one-seed group, a failed and an interrupted run."""
    for seed, acc in PROG_90.items():
        _write_run(root, "progressive", 0.9, seed, acc)
    for seed, acc in PROG_50.items():
        _write_run(root, "progressive", 0.5, seed, acc)
    for seed, acc in LTH_FINAL.items():
        _write_run(root, "lth", 0.9, seed, acc)
    for seed, acc in DENSE_ACC.items():
        _write_run(root, "dense", 0.0, seed, acc)
    for seed, acc in SNIP_ONE.items():
        _write_run(root, "snip", 0.9, seed, acc)
    failed = run_dir(_config("grasp", 0.9, 42), root)
    failed.mkdir(parents=True)
    (failed / "config.json").write_text(json.dumps(to_dict(_config("grasp", 0.9, 42))))
    (failed / "failed.json").write_text(json.dumps({"status": "failed", "reason": "NaN loss at epoch 2"}))
    interrupted = run_dir(_config("progressive", 0.9, 789), root)
    interrupted.mkdir(parents=True)
    (interrupted / "config.json").write_text(json.dumps(to_dict(_config("progressive", 0.9, 789))))
    (interrupted / "checkpoint.pt").write_bytes(b"")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, "-m", "suite.report", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=600)


# --- independent recomputation from the result.json files ----------------------------------------

def _accuracies(root: Path, method: str, target: float, round_dir: str | None = None) -> dict[int, float]:
    """Seed -> final accuracy read back from the files, the way a reader would check the report."""
    out = {}
    pattern = f"**/{round_dir}/result.json" if round_dir else "**/seed_*/result.json"
    for path in root.glob(pattern):
        data = json.loads(path.read_text())
        if data["method"] == method and data["target_sparsity"] == target:
            out[data["seed"]] = data["final_test_accuracy"]
    return dict(sorted(out.items()))


def _textbook_summary(values: list[float]) -> tuple[float, float, float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T_975_DF2 * sd / math.sqrt(n)  # n = 3 here
    return mean, sd, mean - half, mean + half


def _p_df2(t: float) -> float:
    """Two-sided p of Student t with 2 df: 1 - |t| / sqrt(2 + t^2)."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_study(root)
    return root


@pytest.fixture(scope="module")
def published_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pub") / "published.yaml"
    path.write_text(
        "references:\n"
        "  - {method: progressive, model: tiny_mlp, dataset: synthetic, target_sparsity: 0.9, accuracy: 92.0,\n"
        "     spread: 0.1, source: 'made-up paper, Table 1'}\n"
        "  - {method: lth, model: tiny_mlp, dataset: synthetic, target_sparsity: 0.9, accuracy: 91.0,\n"
        "     approximate: true, source: 'made-up figure'}\n"
        "  - {method: grasp, model: vgg19, dataset: cifar10, target_sparsity: 0.98, accuracy: 92.19,\n"
        "     source: 'no runs of this here'}\n")
    return path


@pytest.fixture(scope="module")
def json_run(study, published_file, tmp_path_factory):
    """One CLI call writing JSON, the plots and an offline W&B run."""
    out = tmp_path_factory.mktemp("out")
    proc = _cli(str(study), "--format", "json", "--out", str(out / "report.json"), "--plots", str(out / "plots"),
                "--published", str(published_file), "--wandb", "--wandb-dir", str(out / "wb"),
                env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "report.json").read_text())


def _rows(tables: dict, name: str, **match) -> list[dict]:
    return [r for r in tables[name] if all(r.get(k) == v for k, v in match.items())]


def test_summary_numbers_equal_recomputation(study, json_run):
    _, tables = json_run
    cases = [("progressive", 0.9, None, ""), ("progressive", 0.5, None, ""), ("lth", 0.9, None, "final"),
             ("lth", 0.5, "round_1", "round 1"), ("dense", 0.0, None, "")]
    dense_mean = _textbook_summary(list(_accuracies(study, "dense", 0.0).values()))[0]
    for method, target, round_dir, round_label in cases:
        acc = _accuracies(study, method, target, round_dir)
        [row] = _rows(tables, "summary", method=method, target_sparsity=target, round=round_label)
        mean, sd, lo, hi = _textbook_summary(list(acc.values()))
        assert row["n"] == 3 and row["seeds"] == list(acc)
        assert row["mean"] == pytest.approx(mean, rel=1e-12)
        assert row["sd"] == pytest.approx(sd, rel=1e-12)
        assert row["ci_low"] == pytest.approx(lo, rel=1e-12) and row["ci_high"] == pytest.approx(hi, rel=1e-12)
        assert row["min"] == min(acc.values()) and row["max"] == max(acc.values())
        assert row["test_at_best_val_mean"] is None  # no validation split: no best epoch (never test-selected)
        if method != "dense":
            assert row["diff_dense"] == pytest.approx(mean - dense_mean, rel=1e-12)
    # 5 experiments, LTH contributes 2 round groups beside its final one; the final round is not doubled, and
    # its round 0 (the same dense trainings as the dense group) is named in the dense row, not repeated.
    assert len(tables["summary"]) == 6
    assert len(_rows(tables, "summary", method="lth")) == 2
    [dense] = _rows(tables, "summary", method="dense")
    assert dense["same_runs_as"] == ["lth [round 0]"]
    assert not _rows(tables, "summary", round="round 0")
    [one] = _rows(tables, "summary", method="snip")
    assert one["n"] == 1 and one["sd"] is None and one["ci_low"] is None and "n < 2" in one["note"]


def test_head_to_head_numbers_equal_recomputation(study, json_run):
    _, tables = json_run
    rows = tables["head_to_head"]
    assert [(r["method"], r["round"], r["target_sparsity"]) for r in rows] == [
        ("lth", "round 1", 0.5), ("lth", "final", 0.9), ("snip", "", 0.9)]
    # LTH final vs progressive at 0.9: same seeds, so the paired t-test is primary.
    lth, prog = _accuracies(study, "lth", 0.9), _accuracies(study, "progressive", 0.9)
    d = [lth[s] - prog[s] for s in sorted(prog)]
    mean_d = sum(d) / 3
    t_paired = mean_d / (math.sqrt(sum((x - mean_d) ** 2 for x in d) / 2) / math.sqrt(3))
    [paired] = _rows(tables, "head_to_head", round="final")
    assert paired["paired"] is True and paired["primary_test"] == "paired t"
    assert paired["paired_t"] == pytest.approx(t_paired, rel=1e-10)
    assert paired["paired_p"] == pytest.approx(_p_df2(t_paired), rel=1e-10)
    assert paired["wilcoxon_p"] == pytest.approx(0.25)  # 3 pairs, all one sign: 2 / 2^3
    welch = sps.ttest_ind(list(lth.values()), list(prog.values()), equal_var=False)
    assert paired["welch_p"] == pytest.approx(welch.pvalue, rel=1e-12)
    assert paired["diff"] == pytest.approx(sum(lth.values()) / 3 - sum(prog.values()) / 3, rel=1e-12)
    # LTH round 1 vs progressive at 0.5: seeds differ, Welch is primary.
    r1, p50 = _accuracies(study, "lth", 0.5, "round_1"), _accuracies(study, "progressive", 0.5)
    [unpaired] = _rows(tables, "head_to_head", round="round 1")
    assert unpaired["paired"] is False and unpaired["paired_p"] is None and unpaired["wilcoxon_p"] is None
    assert unpaired["welch_p"] == pytest.approx(sps.ttest_ind(list(r1.values()), list(p50.values()),
                                                              equal_var=False).pvalue, rel=1e-12)
    assert unpaired["mannwhitney_p"] == pytest.approx(sps.mannwhitneyu(list(r1.values()), list(p50.values())).pvalue)
    # Holm's family is the table at one sparsity: each row here is alone in its family (the n = 1 row has no
    # p), so Holm leaves its p as it is and its CI is the plain 95% CI of its own test.
    for row, x, test in ((paired, (list(lth.values()), list(prog.values())), sps.ttest_rel),
                              (unpaired, (list(r1.values()), list(p50.values())), None)):
        assert row["family_size"] == 1 and row["primary_p_holm"] == row["primary_p"] and row["ci_alpha"] == 0.05
        res = test(*x) if test else sps.ttest_ind(*x, equal_var=False)
        ci = res.confidence_interval(0.95)
        assert (row["diff_ci_low"], row["diff_ci_high"]) == (pytest.approx(ci.low, rel=1e-12),
                                                              pytest.approx(ci.high, rel=1e-12))
    assert paired["verdict"] == ("worse" if paired["primary_p_holm"] < 0.05 else "no significant difference")
    [snip] = _rows(tables, "head_to_head", method="snip")
    assert snip["primary_p"] is None and snip["primary_p_holm"] is None and snip["verdict"] == "not tested"


def test_equivalence_published_power_and_skipped(study, json_run):
    _, tables = json_run
    prog = list(_accuracies(study, "progressive", 0.9).values())
    dense = list(_accuracies(study, "dense", 0.0).values())
    [eq] = _rows(tables, "equivalence", method="progressive", target_sparsity=0.9)
    # both ran seeds 42, 123, 456: the TOST of the paired differences (df 2), not Welch's
    d = [p - q for p, q in zip(prog, dense)]
    se, df = math.sqrt(sps.tvar(d) / 3), 2
    diff = sum(d) / 3
    assert eq["test"] == "paired TOST"
    assert eq["p_lower"] == pytest.approx(sps.t.sf((diff + 0.1) / se, df), rel=1e-10)
    assert eq["p_upper"] == pytest.approx(sps.t.cdf((diff - 0.1) / se, df), rel=1e-10)
    half = sps.t.ppf(0.95, df) * se
    assert eq["ci90_low"] == pytest.approx(diff - half, rel=1e-10)
    drop = diff + half < -0.1  # the whole 90% interval below the margin: a drop was found, not "not shown"
    assert eq["equivalent"] is False
    assert eq["outcome"] == ("drop larger than the margin" if drop else "not shown (the interval crosses the margin)")
    # published: our progressive seeds against 92.0 +- 0.1 (runs not given): the published SD is added as the
    # uncertainty of the published number, df = ours (2, closed form)
    [ours] = _rows(tables, "published", kind="ours, same method", published_method="progressive")
    mean, sd, _, _ = _textbook_summary(prog)
    t = (mean - 92.0) / math.sqrt(sd ** 2 / 3 + 0.1 ** 2)
    assert ours["t"] == pytest.approx(t, rel=1e-10) and ours["p"] == pytest.approx(_p_df2(t), rel=1e-10)
    assert ours["test"] == "t-test with the published SD as its uncertainty"
    half = T_975_DF2 * math.sqrt(sd ** 2 / 3 + 0.1 ** 2)
    assert ours["ci_low"] == pytest.approx(mean - 92.0 - half, rel=1e-10)
    # LTH's published number has no spread: the one-sample t-test
    [lth_ours] = _rows(tables, "published", kind="ours, same method", published_method="lth")
    lth_acc = list(_accuracies(study, "lth", 0.9).values())
    m_l, sd_l, _, _ = _textbook_summary(lth_acc)
    assert lth_ours["t"] == pytest.approx((m_l - 91.0) / (sd_l / math.sqrt(3)), rel=1e-10)
    assert lth_ours["test"] == "one-sample t-test"
    # the words of the document's claims (claim_outcome); no seed config states tiny_mlp's epochs
    assert {r["outcome"] for r in tables["published"] if r["kind"] != "ours, reference method"} <= {
        "", "confirmed and exceeded", "confirmed", "not shown with these seeds", "differs under this suite's recipe"}
    # the reference method against another method's number: a comparison from the row's own p and sign
    [ref] = _rows(tables, "published", kind="ours, reference method", published_method="lth")
    side = "better" if ref["diff"] > 0 else "worse"
    assert ref["outcome"] == (f"{side} than the published lth" if ref["p"] < 0.05 else
                              "no significant difference from the published lth")
    # the vgg19 / cifar10 number: no such runs here, so not in the table
    kinds = [(r["published_method"], r["kind"], r["method"]) for r in tables["published"]]
    assert kinds == [("lth", "published, not re-run", "lth"), ("lth", "ours, same method", "lth"),
                     ("lth", "ours, reference method", "progressive"),
                     ("progressive", "published, not re-run", "progressive"),
                     ("progressive", "ours, same method", "progressive")]
    # power: per comparison, for its own test (paired t, 3 pairs: SE of the differences, df 2) at the level it
    # was judged at (alone in its family: 0.05); the MDD x solves power(x) = 0.8 under nct(2, x / SE)
    [pw] = _rows(tables, "power", method="lth", round="final")
    lth = _accuracies(study, "lth", 0.9)
    d = [lth[s] - _accuracies(study, "progressive", 0.9)[s] for s in sorted(lth)]
    se = _textbook_summary(d)[1] / math.sqrt(3)
    assert pw["primary_test"] == "paired t" and pw["primary_se"] == pytest.approx(se, rel=1e-12)
    crit = sps.t.ppf(0.975, 2)
    nc = pw["mdd"] / se
    assert sps.nct.sf(crit, 2, nc) + sps.nct.cdf(-crit, 2, nc) == pytest.approx(0.8, abs=1e-9)
    skipped = {r["status"]: r for r in tables["not_included"]}
    assert set(skipped) == {"failed", "unfinished"}
    assert skipped["failed"]["reason"] == "NaN loss at epoch 2" and skipped["failed"]["method"] == "grasp"
    assert skipped["unfinished"]["seed"] == 789 and "checkpoint.pt present" in skipped["unfinished"]["reason"]


@pytest.mark.slow  # the report CLI several times
def test_csv_equals_json(study, published_file, json_run, tmp_path):
    _, tables = json_run
    proc = _cli(str(study), "--format", "csv", "--published", str(published_file))
    assert proc.returncode == 0, proc.stderr
    sections = report.split_csv(proc.stdout)
    assert list(sections) == ["summary", "head_to_head", "equivalence", "published", "power", "trajectory",
                              "not_included"]
    for name, got in sections.items():
        assert len(got) == len(tables[name]), name
        assert list(got[0]) == list(tables[name][0]), name  # each section holds its own table's columns only
        for c, j in zip(got, tables[name]):
            for key, value in j.items():
                if isinstance(value, float):
                    assert float(c[key]) == value, (name, key)  # repr round-trips exactly
                elif value is None:
                    assert c[key] == "", (name, key)
    [prog] = [r for r in sections["summary"] if r["method"] == "progressive" and r["target_sparsity"] == "0.9"]
    assert prog["seeds"] == "42;123;456"
    folder = tmp_path / "csv"
    proc = _cli(str(study), "--format", "csv", "--published", str(published_file), "--out", f"{folder}/")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.csv" for n in sections)
    assert list(csv.DictReader(io.StringIO((folder / "power.csv").read_text()))) == sections["power"]


@pytest.mark.slow  # renders every table with figures
def test_markdown_and_latex(study, published_file, tmp_path):
    md = _cli(str(study), "--published", str(published_file))
    assert md.returncode == 0, md.stderr
    text = md.stdout
    for heading in ("## 1. Summary", "## 2. Head-to-head against progressive", "## 3. Equivalence to dense",
                    "## 4. Published references", "## 5. Power", "## 6. Pruning trajectory", "## 7. Runs not included"):
        assert heading in text
    assert "Holm-Bonferroni" in text and "published, not re-run" in text and "NaN loss at epoch 2" in text
    assert "lth [round 1]" in text and "n<2, no tests" in text
    again = _cli(str(study), "--published", str(published_file), "--out", str(tmp_path / "r.md"))
    assert again.returncode == 0 and again.stdout == "", again.stderr
    assert (tmp_path / "r.md").read_text() == text  # deterministic
    tex = _cli(str(study), "--format", "latex", "--published", str(published_file))
    assert tex.returncode == 0, tex.stderr
    body = tex.stdout
    assert body.count(r"\begin{table}") == body.count(r"\end{table}") == 7
    assert body.count(r"\toprule") == body.count(r"\bottomrule") == 7 and r"\hline" not in body
    assert "tiny\\_mlp" in body and "Δ" not in body and "±" not in body and "–" not in body
    assert r"\resizebox" not in body and "Wilcoxon p &" not in body  # the columns a paper prints, unshrunk
    head = body[body.index(r"\label{tab:pp-head-to-head}"):]
    # 14 columns: Target s, Group, Against, n, Test, Δ, Adjusted CI, Holm p, Verdict, MDD, Epochs, Cost (dense
    # cycles), Budget pairing and Protocol; budget, distribution and init are in the labels and 'Protocol'
    assert head.split(r"\midrule")[0].count("&") == 13
    assert "Budget: 3 ep/cycle" in head.split(r"\label")[0] or "Budget: 3 ep/cycle" in body


def test_plots_written(json_run):
    out, tables = json_run
    names = sorted(p.name for p in (out / "plots").iterdir())
    # named by their family in words: sparsity in percent, epochs per cycle, init (not recorded here)
    stems = ["dynamics-50-3ep-init-unknown", "dynamics-90-3ep-init-unknown",
             "layers-50-3ep-init-unknown", "layers-90-3ep-init-unknown", "tradeoff-3ep-init-unknown",
             "forest-50-3ep-init-unknown", "forest-90-3ep-init-unknown",
             "frontier-50-init-unknown", "frontier-90-init-unknown"]
    assert names == sorted([f"{s}.{ext}" for s in stems for ext in ("pdf", "png")]
                           + ["comparison_animation.gif", "training_animation.gif"])
    for name in names:
        head = (out / "plots" / name).read_bytes()[:8]
        assert head.startswith({"pdf": b"%PDF", "png": b"\x89PNG", "gif": b"GIF89a"}[name.rsplit(".", 1)[1]])


def test_wandb_offline_run_holds_the_tables(json_run):
    out, tables = json_run
    [run] = list((out / "wb" / "wandb").glob("offline-run-*"))
    table_files = sorted((run / "files" / "media" / "table" / "report").glob("*.table.json"))
    assert sorted(p.name.split("_0_")[0] for p in table_files) == sorted(
        ["summary", "head_to_head", "equivalence", "published", "power", "trajectory", "not_included"])
    summary = json.loads(next(p for p in table_files if p.name.startswith("summary_")).read_text())
    means = summary["data"]
    col = summary["columns"].index("mean")
    assert [row[col] for row in means] == [r["mean"] for r in tables["summary"]]
    assert len(list((run / "files" / "media" / "images").rglob("*.png"))) == 9


def test_nothing_to_report_is_one_error_line_and_exit_2(tmp_path):
    root = tmp_path / "runs"
    (root / "x" / "seed_42").mkdir(parents=True)
    (root / "x" / "seed_42" / "failed.json").write_text('{"status": "failed", "reason": "oom"}')
    proc = _cli(str(root))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"error: no finished runs (result.json) under {root} (1 unfinished or failed run folders)\n"


@pytest.mark.parametrize("setup, message", [
    ("missing", "runs directory not found"), ("empty", "no finished runs"), ("file", "is a file, not a folder")])
def test_bad_runs_dir_in_process(tmp_path, capsys, setup, message):
    root = tmp_path / "runs"
    if setup == "empty":
        root.mkdir()
    if setup == "file":
        root.write_text("")
    assert report.main([str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


# --- in-process checks of the parts --------------------------------------------------------------

def test_final_lth_round_is_counted_once_and_duplicates_are_listed(tmp_path):
    _write_run(tmp_path / "a", "lth", 0.9, 42, 91.2)
    runs, skipped = report.scan_runs(tmp_path)
    assert sorted((r.round, r.target_sparsity) for r in runs if r.round is not None) == [(0, 0.0), (1, 0.5)]
    assert len([r for r in runs if r.round is None]) == 1 and skipped == []
    # the same run copied under a second root: counted once, the copy is listed as a duplicate
    _write_run(tmp_path / "b", "lth", 0.9, 42, 91.2)
    runs, skipped = report.scan_runs(tmp_path)
    groups = report.group_runs(runs, skipped, tmp_path)
    assert [len(g.runs) for g in groups] == [1, 1, 1]
    assert [s.status for s in skipped] == ["duplicate"] * 3 and all(s.path.startswith("b/") for s in skipped)


def test_final_round_found_by_its_numbers_when_results_lack_the_round_field(tmp_path):
    folder = _write_run(tmp_path, "lth", 0.9, 42, 91.2)
    for path in [folder / "result.json", *folder.glob("round_*/result.json")]:
        data = json.loads(path.read_text())
        del data["round"]
        path.write_text(json.dumps(data))
    runs, _ = report.scan_runs(tmp_path)
    assert sorted((r.round, r.final_accuracy) for r in runs if r.round is not None) == [(0, 92.7), (1, 92.6)]


def test_budget_key_ignores_method_settings_only():
    a = {"method": "lth", "lth.rate": 0.3, "prune.target_sparsity": 0.5, "train.epochs": 3}
    b = {"method": "progressive", "prune.schedule": "cubic", "train.epochs": 3}
    c = {"method": "progressive", "train.epochs": 4}
    assert report.budget_key(a) == report.budget_key(b) == (("train.epochs", "3"),)
    assert report.budget_key(c) != report.budget_key(b)


def test_published_file_problems_are_config_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("references:\n  - {method: lth, model: m, dataset: d, target_sparsity: 0.9, accuracy: 0.9}\n")
    with pytest.raises(ConfigError, match=r"references\[0\]: missing 'source'"):
        report.load_published(path)
    entry = "references:\n  - {method: lth, model: m, dataset: d, target_sparsity: %s, accuracy: 90, source: s%s}\n"
    path.write_text(entry % (90, ""))
    with pytest.raises(ConfigError, match="target_sparsity must be a fraction"):
        report.load_published(path)
    path.write_text(entry % (0.9, ", acc: 1"))
    with pytest.raises(ConfigError, match="unknown key 'acc'"):
        report.load_published(path)


def test_shipped_published_file_loads():
    entries = report.load_published(report.DEFAULT_PUBLISHED)
    got = {(e.method, e.model, e.dataset, e.target_sparsity): (e.accuracy, e.spread) for e in entries}
    assert got[("lth", "resnet18", "cifar10", 0.729)][0] == 90.5
    assert got[("snip", "vgg_like", "cifar10", 0.97)][0] == 92.0
    assert got[("grasp", "vgg19", "cifar10", 0.98)] == (92.19, 0.12)
    assert got[("lth", "lenet300", "mnist", 0.789)][0] == 98.5
    assert got[("snip", "lenet300", "mnist", 0.98)][0] == 97.6
    assert all(e.source and e.checked for e in entries)


def test_wandb_disabled_pushes_nothing(tmp_path, monkeypatch):
    _write_run(tmp_path / "runs", "dense", 0.0, 42, 92.8)
    built = report.build_report(tmp_path / "runs")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    outcome = report.push_to_wandb(built, [], "p", None, str(tmp_path / "wb"), "offline")
    assert outcome == "W&B disabled: nothing pushed" and not (tmp_path / "wb").exists()


def test_report_package_imports_only_downward_and_no_private_names():
    """Each module of suite/report imports only the modules below it (the order of suite/report/__init__.py's
    docstring) and never another module's private names."""
    import ast
    order = ["fmt", "load", "labels", "export", "published", "tables", "claims", "build", "render", "figures", "study",
             "cli"]
    folder = REPO / "suite" / "report"
    for i, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("suite.report"):
                target = node.module.split(".")[2]
                assert target in order[:i], f"{name} imports {node.module}"
                assert not any(a.name.startswith("_") for a in node.names), f"{name}: {ast.dump(node)}"
            if isinstance(node, ast.ImportFrom) and node.module == "suite":
                assert all(a.name not in ("report", "plots", "study") for a in node.names), name


# --- one test per row: Holm within the sparsity, CIs that agree with the verdicts --------------------

FAMILY_90 = {"snip": {42: 90.00, 123: 90.40, 456: 89.75},     # far below progressive: rejected first
             "random": {42: 91.60, 123: 92.05, 456: 91.20},   # about 0.5 below, tight: rejected second
             "grasp": {42: 92.00, 123: 92.50, 456: 91.60}}    # within noise: not rejected


def _family_study(root: Path) -> None:
    for seed, acc in PROG_90.items():
        _write_run(root, "progressive", 0.9, seed, acc)
    for method, accs in FAMILY_90.items():
        for seed, acc in accs.items():
            _write_run(root, method, 0.9, seed, acc)
    for seed, acc in LTH_FINAL.items():
        _write_run(root, "lth", 0.9, seed, acc)
    for seed, acc in LTH_ROUNDS[0][0].items():  # dense equal to LTH's round 0, seed for seed: the same runs
        _write_run(root, "dense", 0.0, seed, acc)


def test_holm_adjusted_cis_agree_with_the_verdicts_exactly(tmp_path):
    """The four paired rows at 0.9 are one Holm family (m = 4); each row's CI is the paired t CI at its
    Holm-consistent level, recomputed here by hand with scipy."""
    _family_study(tmp_path)
    rows = {r["method"]: r for r in report.build_report(tmp_path).table("head_to_head").rows}
    prog = [PROG_90[s] for s in sorted(PROG_90)]
    others = {**FAMILY_90, "lth": LTH_FINAL}
    raw = {m: sps.ttest_rel([a[s] for s in sorted(a)], prog).pvalue for m, a in others.items()}
    order = sorted(raw, key=raw.get)
    assert order == ["snip", "lth", "random", "grasp"]
    m = 4
    rejected = 0
    for k, name in enumerate(order):  # Holm's step-down by hand
        if raw[name] < 0.05 / (m - k) and rejected == k:
            rejected += 1
    assert rejected == 3  # snip, lth and random differ; grasp does not
    running = 0.0
    for k, name in enumerate(order):
        running = max(running, min(1.0, (m - k) * raw[name]))
        level = 0.05 / (m - k) if k < rejected else 0.05 / (m - rejected)
        d = [others[name][s] - PROG_90[s] for s in sorted(PROG_90)]
        mean_d = sum(d) / 3
        half = sps.t.ppf(1 - level / 2, 2) * _textbook_summary(d)[1] / math.sqrt(3)
        row = rows[name]
        assert row["family_size"] == 4 and row["primary_test"] == "paired t"
        assert row["primary_p_holm"] == pytest.approx(running, rel=1e-12)
        assert row["ci_alpha"] == pytest.approx(level, rel=1e-15)
        assert row["diff_ci_low"] == pytest.approx(mean_d - half, rel=1e-10)
        assert row["diff_ci_high"] == pytest.approx(mean_d + half, rel=1e-10)
        excludes_zero = row["diff_ci_high"] < 0 or row["diff_ci_low"] > 0
        assert excludes_zero == (row["verdict"] != "no significant difference")
    assert rows["grasp"]["verdict"] == "no significant difference" and rows["snip"]["verdict"] == "worse"
    # the exact numbers of the last step: level 0.05 / (4 - 3) = 0.05 for grasp, 0.05 / 2 for random
    assert rows["grasp"]["ci_alpha"] == 0.05 and rows["random"]["ci_alpha"] == 0.025


def test_same_runs_are_not_tested_and_not_in_the_equivalence_table(tmp_path):
    _family_study(tmp_path)
    built = report.build_report(tmp_path, reference="dense")
    [row] = built.table("head_to_head").rows
    assert (row["method"], row["round"], row["primary_test"], row["verdict"]) == ("lth", "round 0", "same runs",
                                                                                  "same runs")
    assert row["primary_p"] is None or math.isnan(row["primary_p"])
    assert math.isnan(row["diff_ci_low"]) and row["diff"] == 0.0
    assert not [r for r in built.table("equivalence").rows if r["round"] == "round 0"]
    text = report.render_markdown(built)
    assert "| same runs" in text


def test_wilcoxon_says_it_cannot_reject_at_three_pairs(study):
    text = report.render_markdown(report.build_report(study))
    assert "cannot reject at n=3 (min p 0.25)" in text and "With 3 pairs" not in text
    assert "{reference}" not in text


# --- costs per dense cycle, budget as an axis ----------------------------------------------------------

def _set_fields(folder: Path, **fields) -> None:
    for path in [folder / "result.json", *folder.glob("round_*/result.json")]:
        data = json.loads(path.read_text())
        data.update({k: (v(data) if callable(v) else v) for k, v in fields.items()})
        path.write_text(json.dumps(data))


def test_cost_per_dense_cycle_from_new_fields_or_the_old_fallback(tmp_path):
    """An older result has train_flops_x_dense (over a dense run of the same epochs per cycle): its cost in
    dense cycles is that times the cycles trained (LTH round 7 of 20-epoch cycles: 0.52 x 160 / 20 = 4.16);
    a new result's train_cost_x_dense_cycle is taken as it is."""
    old = _write_run(tmp_path / "old", "progressive", 0.9, 42, 92.1, epochs=20)
    _set_fields(old, train_flops_x_dense=0.52, total_epochs_trained=160)
    new = _write_run(tmp_path / "new", "progressive", 0.9, 42, 92.1, epochs=20)
    _set_fields(new, train_cost_x_dense_cycle=0.3, cycles=1.0, init="kaiming_normal", distribution="erk",
                keep_first_dense=False, keep_last_dense=True, val_size=5000, test_accuracy_at_best_val=92.4)
    [o] = report.scan_runs(tmp_path / "old")[0]
    [n] = report.scan_runs(tmp_path / "new")[0]
    assert o.cost_x_dense_cycle == pytest.approx(4.16, rel=1e-12) and o.cost_derived and o.cycles == 8
    assert (o.init, o.distribution, o.val_size) == (None, "global", None)  # no science key: the default
    erk = _write_run(tmp_path / "erk", "rigl", 0.9, 42, 92.1, epochs=20)
    _set_fields(erk, science=lambda d: {**d.get("science", {}), "prune.distribution": "erk"})
    [e] = report.scan_runs(tmp_path / "erk")[0]
    assert e.distribution == "erk"  # an older result's science settings name a non-default distribution
    assert n.cost_x_dense_cycle == 0.3 and not n.cost_derived and n.cycles == 1.0
    assert (n.init, n.distribution, n.dense_layers, n.val_size, n.test_at_best_val) == (
        "kaiming_normal", "erk", ("last",), 5000, 92.4)
    built = report.build_report(tmp_path / "new")
    [row] = built.table("summary").rows
    assert row["train_cost_x_dense_cycle"] == 0.3 and row["test_at_best_val_mean"] == 92.4
    text = report.render_markdown(built)
    # one row: the distribution and init columns hold one value each, said once in the caption
    assert "Test at best val." in text and "Distribution: erk" in text and "kaiming_normal" in text
    # without a validation split no best epoch is shown: the test set never selects one
    assert "Test at best val." not in report.render_markdown(report.build_report(tmp_path / "old"))


def test_a_variant_of_the_reference_is_not_every_methods_reference(tmp_path):
    """progressive under a cubic schedule beside progressive at its defaults (the schedule sweep): SNIP is
    compared with progressive at its defaults alone, once; with the variant it had been compared twice, in
    a Holm family of its own."""
    for seed, acc in PROG_90.items():
        _write_run(tmp_path, "progressive", 0.9, seed, acc)
        _write_run(tmp_path, "progressive", 0.9, seed, acc + 1.0, schedule="cubic")
        _write_run(tmp_path, "snip", 0.9, seed, acc - 0.5)
    rows = report.build_report(tmp_path).table("head_to_head").rows
    assert [(r["label"], r["label_reference"]) for r in rows] == [("snip", "progressive")]
    assert rows[0]["diff"] == pytest.approx(-0.5)


def test_equal_budget_pairs_a_chain_round_with_the_reference_at_the_same_total_epochs(tmp_path):
    """LTH's final round after 3 cycles of 3 epochs (9 epochs) pairs with progressive trained for 9
    epochs: 'equal budget', in the same Holm family as the same-settings rows; the row against the
    3-epoch progressive is labelled with its cost ratio."""
    for seed, acc in PROG_90.items():
        _write_run(tmp_path, "progressive", 0.9, seed, acc)
        _write_run(tmp_path, "progressive", 0.9, seed, acc + 0.5, epochs=9)
    for seed, acc in LTH_FINAL.items():
        _write_run(tmp_path, "lth", 0.9, seed, acc)
    for folder in tmp_path.rglob("seed_*"):
        _set_fields(folder, train_cost_x_dense_cycle=lambda d: 0.5 * d["total_epochs_trained"] / d["epochs"])
    built = report.build_report(tmp_path)
    rows = [r for r in built.table("head_to_head").rows if r["round"] == "final"]
    # equal epochs are not an equal cost: every row gives the cost ratio (1.5 / 0.5 dense cycles)
    assert [(r["budget_reference"], r["budget_pairing"], r["cross_budget"]) for r in rows] == [
        ("3 ep/cycle", "9 vs 3 epochs, cost ratio 3x", False), ("9 ep/cycle", "equal epochs, cost ratio 1x", True)]
    equal = rows[1]
    assert equal["epochs_trained"] == equal["epochs_trained_reference"] == 9 and equal["equal_epochs"]
    # one unit, the 3-epoch base cycle: 9 epochs at half a dense cycle's FLOPs per epoch cost 1.5 on both sides
    assert equal["train_cost_x_dense_cycle"] == equal["train_cost_x_dense_cycle_reference"] == 1.5
    assert equal["cost_unit"] == "3-epoch dense cycles"
    # 'Protocol' lists the schedule too: the same 9 epochs as 3 cycles of 3 against one cycle of 9
    assert equal["protocol_differs"] == ["budget schedule 3 ep/cycle x 3 vs 9 ep/cycle x 1"]
    assert rows[0]["protocol_differs"] == ["budget 9 vs 3 epochs"]
    prog9 = [PROG_90[s] + 0.5 for s in sorted(PROG_90)]
    res = sps.ttest_rel([LTH_FINAL[s] for s in sorted(LTH_FINAL)], prog9)
    assert equal["primary_test"] == "paired t" and equal["primary_p"] == pytest.approx(res.pvalue, rel=1e-12)
    # the two budgets of progressive are separate groups, labelled by budget
    budgets = sorted(r["budget"] for r in built.table("summary").rows if r["method"] == "progressive")
    assert budgets == ["3 ep/cycle", "9 ep/cycle"]
    assert any("; equal epochs, training cost 1.5x vs 1.5x in 3-epoch dense cycles" in line
               for line in built.meta["headline"])
    assert not any("equal budget" in line for line in built.meta["headline"])


def test_structured_groups_are_measured_against_unstructured_of_the_same_settings(tmp_path):
    """progressive under 1:10 N:M and under channel pruning (classifier kept whole) at 0.9, each against the
    unstructured group of its own settings (channel: the one that also keeps the classifier whole): Δ =
    unstructured − structured, paired t, Holm over the 2 rows. SNIP is compared with the plain
    unstructured reference only, never with a structured variant or the kept-whole control."""
    nm = {42: 90.1, 123: 90.9, 456: 89.8}
    channel = {42: 85.0, 123: 86.1, 456: 84.2}
    control = {42: 91.0, 123: 91.3, 456: 90.6}
    for seed, acc in PROG_90.items():
        _write_run(tmp_path, "progressive", 0.9, seed, acc)
        _write_run(tmp_path, "progressive", 0.9, seed, nm[seed], structure="nm", nm=(1, 10))
        _write_run(tmp_path, "progressive", 0.9, seed, channel[seed], structure="channel", keep_last_dense=True)
        _write_run(tmp_path, "progressive", 0.9, seed, control[seed], keep_last_dense=True)
        _write_run(tmp_path, "snip", 0.9, seed, FAMILY_90["snip"][seed])
    for folder in tmp_path.rglob("seed_*"):  # the layers a result keeps dense are read from its fields
        _set_fields(folder, keep_first_dense=False,
                    keep_last_dense=json.loads((folder / "config.json").read_text())["prune"]["keep_last_dense"])
    built = report.build_report(tmp_path)
    rows = {r["structure"]: r for r in built.table("structure").rows}
    assert sorted(rows) == ["1:10 (N:M)", "channel"]
    seeds = sorted(PROG_90)
    for name, treated, base in (("1:10 (N:M)", nm, PROG_90), ("channel", channel, control)):
        row = rows[name]
        assert row["primary_test"] == "paired t" and (row["n"], row["n_source"], row["family_size"]) == (3, 3, 2)
        assert row["diff"] == pytest.approx(sum(base[s] - treated[s] for s in seeds) / 3, abs=1e-12)
        assert row["primary_p"] == pytest.approx(sps.ttest_rel([base[s] for s in seeds],
                                                               [treated[s] for s in seeds]).pvalue, rel=1e-12)
    ps = sorted(r["primary_p"] for r in rows.values())
    assert sorted(r["primary_p_holm"] for r in rows.values()) == pytest.approx([min(1, 2 * ps[0]),
                                                                               min(1, max(2 * ps[0], ps[1]))])
    assert rows["channel"]["dense_layers"] == "last"
    [snip] = [r for r in built.table("head_to_head").rows if r["method"] == "snip"]
    assert snip["protocol_differs"] == [] and snip["mean_reference"] == pytest.approx(sum(PROG_90.values()) / 3)
    lines = [x for x in built.meta["headline"] if "unstructured − structured" in x]
    assert sorted(line.split("] ", 1)[1].split(": ")[0] for line in lines) == [
        "progressive [1:10] against progressive", "progressive [channel, last kept dense] against progressive [last kept dense]"]
    assert all(line.endswith("unstructured is better: the pattern costs accuracy") for line in lines)
    assert "init" not in [t.name for t in built.tables]  # no init contrast: no section
    # the headline table: one row per method, the plain reference and SNIP's verdict against it; the
    # structured groups (their own table) and the kept-whole control (no row's reference) stay out
    from suite.report.study import headline_table
    table = headline_table(built).splitlines()
    assert [line.split("|")[1].strip() for line in table[4:]] == ["progressive", "snip"]
    from statistics import stdev

    from suite.report.fmt import fmt_p
    assert table[4].split("|")[2].strip() == f"{sum(PROG_90.values()) / 3:.2f} ± {stdev(PROG_90.values()):.2f}"
    assert table[5].split("|")[4].strip() == f"{snip['verdict']} (Holm p {fmt_p(snip['primary_p_holm'])})"


def test_another_init_is_measured_against_the_models_default(tmp_path):
    """progressive and SNIP from PyTorch's init against their runs from the model's default (recorded as
    kaiming_normal): Δ = default − other per method, paired t, Holm over the 2 rows; the head-to-head compares
    SNIP with progressive within each init only."""
    other = {"progressive": {42: 93.0, 123: 93.6, 456: 92.9}, "snip": {42: 90.2, 123: 90.3, 456: 90.0}}
    for seed, acc in PROG_90.items():
        _write_run(tmp_path, "progressive", 0.9, seed, acc)
        _write_run(tmp_path, "snip", 0.9, seed, FAMILY_90["snip"][seed])
        for method in other:
            _write_run(tmp_path, method, 0.9, seed, other[method][seed], init="pytorch")
    for folder in tmp_path.rglob("seed_*"):
        _set_fields(folder, init=json.loads((folder / "config.json").read_text())["model"]["init"].replace(
            "model", "kaiming_normal"))
    built = report.build_report(tmp_path)
    rows = {r["method"]: r for r in built.table("init").rows}
    seeds = sorted(PROG_90)
    for method, base in (("progressive", PROG_90), ("snip", FAMILY_90["snip"])):
        row = rows[method]
        assert (row["init_control"], row["init"], row["family_size"]) == ("kaiming_normal", "pytorch", 2)
        assert row["diff"] == pytest.approx(sum(base[s] - other[method][s] for s in seeds) / 3, abs=1e-12)
        assert row["primary_p"] == pytest.approx(
            sps.ttest_rel([base[s] for s in seeds], [other[method][s] for s in seeds]).pvalue, rel=1e-12)
    head = built.table("head_to_head").rows
    assert sorted((r["init"], r["init_reference"]) for r in head) == [("kaiming_normal", "kaiming_normal"),
                                                                      ("pytorch", "pytorch")]
    assert sum("init kaiming_normal − pytorch" in line for line in built.meta["headline"]) == 2


def test_the_document_names_the_cost_command_per_device_and_thread_count():
    from suite.report.study import cost_commands
    costs = [{"run": "runs/s/a/seed_42", "device": "cpu (Intel Xeon)", "threads": 1},
             {"run": "runs/s/b/seed_42", "device": "cpu (Intel Xeon)", "threads": 1},
             {"run": "runs/s/b/seed_42", "device": "cuda (NVIDIA H200)", "threads": 16}, {"device": "cpu"}]
    assert cost_commands(costs) == ["python -m suite.cost --device cpu --threads 1 runs/s/a/seed_42 runs/s/b/seed_42",
                                    "python -m suite.cost --device cuda --threads 16 runs/s/b/seed_42"]


# --- the command line's edges (issue 17, report side) ------------------------------------------------

def test_plots_onto_a_file_is_one_error_line_and_exit_2(study, tmp_path, capsys):
    target = tmp_path / "figures.png"
    target.write_text("")
    assert report.main([str(study), "--plots", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: --plots: {target} is a file, not a folder\n" and captured.out == ""


def test_an_output_path_that_cannot_be_written_is_one_line_before_any_work(study, tmp_path, capsys):
    """--doc /proc/x.md and --plots /dev/null/x ended in "unexpected FileNotFoundError" after the whole report."""
    blocker = tmp_path / "a_file"
    blocker.write_text("kept\n")
    for flag in ("--doc", "--export", "--out"):
        assert report.main([str(study), flag, str(blocker / "x" / "y.md")]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"error: {flag}: {blocker}/x/y.md cannot be written: {blocker} is not a folder\n"
    assert report.main([str(study), "--readme", str(tmp_path / "README.md")]) == 2
    assert capsys.readouterr().err == f"error: --readme: file not found: {tmp_path}/README.md\n"
    assert blocker.read_text() == "kept\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_failed_write_names_the_file_and_leaves_the_old_one_whole(tmp_path, monkeypatch):
    """The report's files are written through a temp file and a rename: a write that fails half-way leaves the
    old document as it was and no temp file, and the error names the document, not the temp file."""
    from suite.results import atomic_write, atomic_write_text
    doc = tmp_path / "doc.md"
    doc.write_text("the old document\n")

    def half_then_full(tmp):
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device", tmp)
    with pytest.raises(OSError) as e:
        atomic_write(doc, half_then_full)
    assert (e.value.errno, e.value.filename) == (28, str(doc))
    assert doc.read_text() == "the old document\n" and [p.name for p in tmp_path.iterdir()] == ["doc.md"]
    atomic_write_text(doc, "new\n")
    assert doc.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["doc.md"]


def test_reference_without_results_is_one_error_line_and_exit_2(study, capsys):
    assert report.main([str(study), "--reference", "grasp"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("error: --reference: no results of method 'grasp' here "
                            "(methods: dense, lth, progressive, snip)\n") and captured.out == ""


def test_help_names_every_option_with_its_default():
    from suite.report.cli import build_parser
    parser = build_parser()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) == 18  # --plan (the declared family) and --merge (a study across machines) came, --log-x went
    for action in options:
        assert action.help and "default" in action.help, action.option_strings


def test_signed_numbers_never_print_minus_zero(tmp_path):
    from suite.report.fmt import fmt
    assert [fmt(v, signed=True) for v in (-0.001, 0.004, -0.0, 0.006, -0.006)] == [
        "0.00", "0.00", "0.00", "+0.01", "-0.01"]
    for seed, acc in PROG_90.items():  # a method 0.001 below the reference on every seed: Δ rounds to 0
        _write_run(tmp_path, "progressive", 0.9, seed, acc)
        _write_run(tmp_path, "snip", 0.9, seed, acc - 0.001 * (1 + seed % 2))
    lines = report.build_report(tmp_path).meta["headline"]
    assert lines[0].startswith("[90%, 3 ep/cycle, init not recorded] Answer (")  # the family's answer first
    (line,) = [x for x in lines if " vs " in x]
    assert line.startswith("[90%, 3 ep/cycle, init not recorded] snip vs progressive: Δ 0.00 points, paired t")
    assert not any("-0.00" in line for line in lines)


def test_every_method_keeps_one_colour_and_marker_from_the_registry():
    from suite.methods import METHODS
    from suite.report import figures
    styles = {m: figures.method_style(m) for m in METHODS}
    assert len({c for c, _ in styles.values()}) == len(METHODS) and len({k for _, k in styles.values()}) == len(METHODS)
    assert styles["dense"][0] != styles["synflow"][0]
    assert figures.method_style("progressive") == ("#d62728", "o")  # the same in every study and figure
    # a group far on the worse side of the others is left off the scale (tests/test_figures.py)
    assert figures.collapsed([(93.5, 93.0, 94.5), (94.0, 93.5, 95.0), (60.3, 43.4, 77.2), (96.3, 96.2, 96.6)]) == {2}
    assert figures.collapsed([(93.5, 93.0, 94.5), (94.0, 93.5, 95.0), (96.3, 96.2, 96.6)]) == set()


def test_a_head_to_head_across_distributions_or_inits_is_flagged(tmp_path):
    for seed, acc in PROG_90.items():
        _set_fields(_write_run(tmp_path, "progressive", 0.9, seed, acc), distribution="global", init="kaiming_normal")
        _set_fields(_write_run(tmp_path, "rigl", 0.9, seed, acc + 0.2), distribution="erk", init="kaiming_normal")
        _set_fields(_write_run(tmp_path, "snip", 0.9, seed, acc - 0.2), distribution="global", init="pytorch")
    built = report.build_report(tmp_path)
    rows = {r["method"]: r for r in built.table("head_to_head").rows}
    assert rows["rigl"]["protocol_differs"] == ["distribution erk vs global"]
    assert rows["snip"]["protocol_differs"] == ["init pytorch vs kaiming_normal"]
    assert built.meta["warnings"] == [
        "warning: 2 of 2 head-to-head rows compare groups whose distribution, dense layers, init or budget differ "
        "(the 'Protocol' column names it): those rows compare more than the pruning criterion"]
    text = report.render_markdown(built)
    # the group's label says what differs from the common protocol; 'Protocol' says what differs in the pair
    assert "| rigl [erk]" in text and "| snip [pytorch init]" in text and "distribution erk vs global" in text


def test_empty_metrics_files_are_named_on_the_figure_not_drawn_as_empty_axes(tmp_path):
    from suite.report.figures import missing_records_note, write_all
    for seed in (42, 123):
        _write_run(tmp_path, "progressive", 0.9, seed, 92.0)
        folder = _write_run(tmp_path, "snip", 0.9, seed, 90.0)
        (folder / "metrics.jsonl").write_text("")  # empty: the result still counts, its curve cannot be drawn
    built = report.build_report(tmp_path)
    assert missing_records_note(built.groups) == ("no epoch records (metrics.jsonl empty or missing) for: snip")
    assert missing_records_note([g for g in built.groups if g.method == "progressive"]) is None
    written = write_all(built.groups, tmp_path / "figures")
    assert any(p.name.startswith("dynamics") and p.suffix == ".png" for p in written)


# --- a metric where lower is better (issue 22, item 4) ---------------------------------------------

LOSS = {"name": "test_loss", "label": "held-out loss (nats/char)", "higher_is_better": False}
LOSS_PROG = {42: 1.50, 123: 1.52, 456: 1.49}
LOSS_SNIP = {42: 1.60, 123: 1.63, 456: 1.61}     # higher loss than progressive on every seed: worse
LOSS_RANDOM = {42: 1.45, 123: 1.46, 456: 1.44}   # lower loss on every seed: better
LOSS_DENSE = {42: 1.40, 123: 1.41, 456: 1.39}
LOSS_PYTORCH = {42: 1.60, 123: 1.62, 456: 1.61}  # progressive from another init, worse than its default


@pytest.fixture(scope="module")
def loss_study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loss")
    for method, values, init in (("progressive", LOSS_PROG, "model"), ("snip", LOSS_SNIP, "model"),
                                 ("random", LOSS_RANDOM, "model"), ("dense", LOSS_DENSE, "model"),
                                 ("progressive", LOSS_PYTORCH, "pytorch")):
        for seed, loss in values.items():
            folder = _write_run(root, method, 0.0 if method == "dense" else 0.9, seed, 50.0, init=init)
            _set_fields(folder, metric=LOSS, final_test_loss=loss,
                        init="pytorch" if init == "pytorch" else "kaiming_normal")
    return root


def test_a_lower_is_better_metric_turns_every_verdict(loss_study):
    """Δ = method − reference in nats/char, and 'better' means a lower loss: SNIP's higher loss is worse,
    random's lower loss better, the default init (lower loss) better than PyTorch's; bits and perplexity
    beside the loss; the margin defaults to 0.01 nats; every caption names the metric and its direction."""
    pub = report.Published("progressive", "tiny_mlp", "synthetic", 0.9, 1.55, float("nan"), "made up", False, "",
                           "", 0.0005, metric="test_loss")
    built = report.build_report(loss_study, published=[pub])
    assert built.meta["metric"] == LOSS and built.meta["margin"] == 0.01
    rows = {r["label"]: r for r in built.table("head_to_head").rows}
    assert set(rows) == {"snip", "random"}  # the pytorch-init progressive is its own family's reference
    mean = lambda d: sum(d.values()) / 3  # noqa: E731
    assert rows["snip"]["diff"] == pytest.approx(mean(LOSS_SNIP) - mean(LOSS_PROG), abs=1e-12) and rows["snip"]["diff"] > 0
    assert rows["random"]["diff"] == pytest.approx(mean(LOSS_RANDOM) - mean(LOSS_PROG), abs=1e-12)
    assert (rows["snip"]["verdict"], rows["random"]["verdict"]) == ("worse", "better")
    line = next(x for x in built.meta["headline"] if " snip vs progressive" in x)
    assert line.startswith("[90%, 3 ep/cycle, kaiming_normal init] snip vs progressive: Δ +0.110 nats/char, paired t, ")
    assert ": worse; " in line
    [summary] = [r for r in built.table("summary").rows if r["label"] == "progressive"]
    assert summary["mean"] == pytest.approx(mean(LOSS_PROG), abs=1e-12)
    assert summary["bits"] == pytest.approx(mean(LOSS_PROG) / math.log(2), abs=1e-12)
    assert summary["perplexity"] == pytest.approx(math.exp(mean(LOSS_PROG)), abs=1e-12)
    [init] = built.table("init").rows  # default − other = 1.5033 − 1.61 < 0: the default's loss is lower
    assert init["diff"] == pytest.approx(mean(LOSS_PROG) - mean(LOSS_PYTORCH), abs=1e-12)
    assert init["outcome"] == "the default init is better"
    [ours] = [r for r in built.table("published").rows if r["kind"] == "ours, same method" and r["method"] == "progressive"]
    assert ours["diff"] == pytest.approx(mean(LOSS_PROG) - 1.55, abs=1e-12) and ours["outcome"] == "confirmed and exceeded"
    from suite.report.study import claim_paragraphs
    [claim] = claim_paragraphs(built, [pub])
    assert "Confirmed and exceeded: our mean is significantly lower" in claim and "Δ -0.047 nats/char" in claim
    for table in built.tables[:5]:
        assert "held-out loss (nats/char)" in table.caption or "nats/char of held-out loss" in table.caption, table.name
    assert "lower is better" in built.table("head_to_head").caption
    text = report.render_markdown(built)
    main = text[text.index("## 1. Summary"):text.index("*Summary: details*")]
    assert "bits/char |" in main and "Perplexity |" in main


def test_results_without_a_metric_read_as_accuracy(study):
    """An older result (no "metric" key) is test accuracy, higher is better, as before."""
    built = report.build_report(study)
    assert built.meta["metric"] == {"name": "test_accuracy", "label": "test accuracy (%)", "higher_is_better": True}
    assert all(g.values == g.accuracies for g in built.groups) and built.meta["margin"] == 0.1


# --- issue 25: nothing mislabelled -------------------------------------------------------------------

def test_equal_numbers_of_other_runs_are_compared_not_called_the_same_runs(tmp_path):
    """Issue 25, case 7: two methods with identical accuracies seed for seed (two channel runs both at 9.80%)
    were "same runs"; the runs decide (experiment, round, seed): a paired t over exact zeros, not tested."""
    for seed, acc in PROG_90.items():
        _write_run(tmp_path, "progressive", 0.9, seed, acc)
        _write_run(tmp_path, "snip", 0.9, seed, acc)  # other runs, the same numbers
    [row] = report.build_report(tmp_path).table("head_to_head").rows
    assert (row["method"], row["primary_test"], row["verdict"], row["diff"]) == ("snip", "paired t", "not tested", 0.0)
    assert row["note"] == "no spread on either side: t undefined"


def test_the_models_own_init_named_is_never_contrasted_with_itself(tmp_path):
    """Issue 25, case 4: results of model.init=kaiming_normal on a model whose own init it is (written before
    the hash resolved it) gave the row "kaiming_normal − kaiming_normal −0.84"; no contrast of an init with
    itself is made, while another init still is."""
    for seed, acc in PROG_90.items():
        _write_run(tmp_path, "progressive", 0.9, seed, acc)
        _write_run(tmp_path, "progressive", 0.9, seed, acc - 0.84, init="kaiming_normal")
    for folder in tmp_path.rglob("seed_*"):
        _set_fields(folder, init="kaiming_normal")  # what result.json records: the resolved init
    built = report.build_report(tmp_path)
    assert [t.rows for t in built.tables if t.name == "init"] in ([], [[]])  # no table, or one without rows
    assert not [line for line in built.meta["headline"] if "kaiming_normal − kaiming_normal" in line]
    for seed, acc in PROG_90.items():
        _set_fields(_write_run(tmp_path, "progressive", 0.9, seed, acc + 0.5, init="pytorch"), init="pytorch")
    [row] = report.build_report(tmp_path).table("init").rows
    assert (row["init_control"], row["init"]) == ("kaiming_normal", "pytorch")


def test_an_ablation_is_paired_with_its_source_over_the_shared_seeds(tmp_path):
    """Issue 25, partial: an ablation of two of its source's three seeds fell back to Welch; the two
    shared seeds are pairs (one init, one data order)."""
    source = {}
    for seed, acc in PROG_90.items():
        folder = _write_run(tmp_path, "snip", 0.9, seed, acc)
        source = json.loads((folder / "result.json").read_text())
    shuffled = {42: 91.0, 123: 91.9}
    for seed, acc in shuffled.items():
        folder = _write_run(tmp_path, "shuffle", 0.9, seed, acc)
        _set_fields(folder, science=lambda d: {**d["science"], "ablate.source_experiment": source["experiment"],
                                               "ablate.source_method": "snip"})
    [row] = report.build_report(tmp_path).table("ablations").rows
    assert (row["primary_test"], row["n"], row["n_source"]) == ("paired t", 2, 3)
    src, abl = [PROG_90[s] for s in (42, 123)], [shuffled[s] for s in (42, 123)]
    assert row["diff"] == pytest.approx((src[0] - abl[0] + src[1] - abl[1]) / 2, abs=1e-12)
    assert row["primary_p"] == pytest.approx(sps.ttest_rel(src, abl).pvalue, rel=1e-12)


def test_a_cost_json_with_other_batch_sizes_keeps_the_report(tmp_path):
    """Issue 25, case 15: one cost.json measured at batches [1, 64] made the whole report fail
    ("unexpected KeyError: 'latency_ms_b32'"); the table has every batch size any file measured."""
    def cost(batches, seconds, run):
        return {"run": run, "method": "progressive", "model": "tiny_mlp", "structure": "unstructured",
                "achieved_sparsity": 0.9, "device": "cpu", "threads": 1, "batches": batches,
                "formats": {"dense_masked": {"status": "ok", "latency_s": {str(b): seconds for b in batches},
                                             "size_bytes": 100}}}
    folders = [_write_run(tmp_path, "progressive", 0.9, seed, acc) for seed, acc in PROG_90.items()]
    (folders[0] / "cost.json").write_text(json.dumps(cost([1, 32, 256], 0.002, "a")))
    (folders[1] / "cost.json").write_text(json.dumps(cost([1, 64], 0.004, "b")))
    table = report.build_report(tmp_path).table("measured_cost")
    rows = {r["run"]: r for r in table.rows}
    assert (rows["a"]["latency_ms_b32"], rows["a"]["latency_ms_b64"]) == (2.0, None)
    assert (rows["b"]["latency_ms_b32"], rows["b"]["latency_ms_b64"]) == (None, 4.0)
    assert [c.header for c in table.columns if c.header.startswith("ms b")] == ["ms b1", "ms b32", "ms b64", "ms b256"]
    assert "Speed-up b64" in report.render_markdown(report.build_report(tmp_path))  # rendered, no KeyError


# --- bad input and faults: one clear line and an exit code, or a recovery ------------------------

@pytest.mark.usefixtures("quiet")
def test_report_lists_a_nan_accuracy_as_invalid_with_its_path(straight, tmp_path):
    out = tmp_path / "runs"
    for seed in (1, 2, 3):
        target = out / straight.parent.name / f"seed_{seed}"
        shutil.copytree(straight, target)
        data = json.loads((target / "result.json").read_text())
        (target / "result.json").write_text(json.dumps({**data, "seed": seed}))
    bad = out / straight.parent.name / "seed_3" / "result.json"
    bad.write_text(bad.read_text().replace('"final_test_accuracy": ', '"final_test_accuracy": NaN, "x": '))
    runs, skipped = R.scan_runs(out)
    assert sorted(r.seed for r in runs) == [1, 2]
    (s,) = skipped
    assert (s.status, s.seed) == ("invalid", 3)
    assert s.reason == f"{straight.parent.name}/seed_3/result.json: final_test_accuracy is nan, not a finite number"


@pytest.mark.usefixtures("quiet")
def test_report_warns_when_seeds_come_from_different_code(straight, tmp_path, capsys):
    out = tmp_path / "runs"
    for seed, commit in ((1, "a" * 40), (2, "b" * 40)):
        target = out / straight.parent.name / f"seed_{seed}"
        shutil.copytree(straight, target)
        data = json.loads((target / "result.json").read_text())
        data.update(seed=seed, code={"commit": commit, "dirty": False, "diff_sha256": None})
        (target / "result.json").write_text(json.dumps(data))
    code, err, _ = cli(capsys, R.main, [str(out), "--format", "csv"])
    assert code == 0
    warnings = [line for line in err if line.startswith("warning:")]
    assert len(warnings) == 1 and "different code" in warnings[0] and straight.parent.name in warnings[0]
    assert "aaaaaaaaaaaa" in warnings[0] and "bbbbbbbbbbbb" in warnings[0]


def test_an_lth_chain_from_different_code_is_one_warning_naming_its_folder(tmp_path):
    """Its round groups' results sit in seed_<s>/round_<r>/: each round warned once more, as 'the seeds of
    seed_1', 27 lines for two chains of the committed study; now one line names the chain's folder."""
    folders = [_write_run(tmp_path, "lth", 0.9, seed, acc) for seed, acc in LTH_FINAL.items()]
    for folder, commit in zip(folders, ("a" * 40, "b" * 40, "b" * 40)):
        for result in (folder / "result.json", *folder.glob("round_*/result.json")):
            data = json.loads(result.read_text())
            data["code"] = {"commit": commit, "dirty": False, "diff_sha256": None}
            result.write_text(json.dumps(data))
    warnings = report.build_report(tmp_path).meta["warnings"]
    assert warnings == [f"warning: the seeds of {folders[0].parent.name} (3 groups: its chain's rounds) come from "
                        f"different code (aaaaaaaaaaaa, bbbbbbbbbbbb); their spread mixes code changes with seed noise"]


@pytest.mark.usefixtures("quiet")
def test_unexpected_error_in_report_is_one_line(straight, tmp_path, capsys, monkeypatch):
    out, _ = copy_run(straight, tmp_path)
    target = tmp_path / "report.md"
    target.mkdir()  # --out names a folder: the user's path, one line naming it (exit 2)
    code, err, _ = cli(capsys, R.main, [str(out), "--out", str(target)])
    assert (code, err) == (2, [f"error: {target}: Is a directory"])
    import suite.report.cli as report_cli

    def broken(*args, **kwargs):  # a defect of the report itself: one line, the traceback in error.log
        raise KeyError("no_such_column")
    monkeypatch.setattr(report_cli, "build_report", broken)
    code, err, _ = cli(capsys, R.main, [str(out)])
    assert code == EXIT_FAILED
    one_error(err, "unexpected KeyError", f"(details in {out / 'error.log'})")
    assert "Traceback (most recent call last)" in (out / "error.log").read_text()


@pytest.mark.usefixtures("quiet")
def test_report_cli_does_not_count_a_result_its_folder_disowns(straight, tmp_path):
    """python -m suite.report, as a user runs it: a copied seed and a result without its weights are
    listed as invalid; only the true result is counted."""
    out, folder = copy_run(straight, tmp_path)
    shutil.copytree(folder, folder.parent / "seed_43")
    shutil.copytree(folder, folder.parent / "seed_44")
    (folder.parent / "seed_44" / "model.safetensors").unlink()
    proc = subprocess.run([sys.executable, "-m", "suite.report", str(out), "--format", "json"], capture_output=True,
                          text=True, cwd=ROOT, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    tables = json.loads(proc.stdout)
    text = json.dumps(tables)
    assert "seed 42's result, not this folder's seed 43" in text and "no model.safetensors beside it" in text
    (row,) = [r for r in tables["summary"]]
    assert row["n"] == 1


@pytest.mark.usefixtures("quiet")
def test_report_follows_a_linked_run_folder_and_lists_a_link_to_one_it_read(straight, tmp_path):
    """A seed folder kept elsewhere and linked in is counted, as the sweep counts it; a link to a folder
    the report already read is listed as a duplicate, never counted twice."""
    out, folder = copy_run(straight, tmp_path)
    elsewhere = tmp_path / "elsewhere" / folder.parent.name
    elsewhere.mkdir(parents=True)
    shutil.move(str(folder), elsewhere / folder.name)
    folder.symlink_to(elsewhere / folder.name, target_is_directory=True)
    runs, skipped = R.scan_runs(out)
    assert [(r.seed, r.path) for r in runs] == [(42, folder)] and skipped == []
    assert S.run_status(folder).state == "done"
    (out / "zz-link").symlink_to(folder.parent, target_is_directory=True)  # walked after the folder itself
    runs, skipped = R.scan_runs(out)
    assert len(runs) == 1 and [(s.status, s.path) for s in skipped] == [("duplicate", "zz-link")]


@pytest.mark.usefixtures("quiet")
def test_a_channel_structured_result_counts_up_to_its_target_in_whole_channels():
    from suite.results import InvalidResult, check_exact_count
    base = {"target_sparsity": 0.5, "prunable_total": 100, "science": {"prune.structure": "channel"}}
    check_exact_count({**base, "prunable_remaining": 52, "achieved_sparsity": 0.48})  # whole channels: under
    with pytest.raises(InvalidResult, match=r"0.510000 \(51 of 100 weights pruned\) exceeds its target 0.500000 "
                                            r"\(50 at most, in whole channels\)"):
        check_exact_count({**base, "prunable_remaining": 49, "achieved_sparsity": 0.51})
    with pytest.raises(InvalidResult, match=r"\(48 of 100 weights pruned\) is not its target 0.500000 \(50 pruned"):
        check_exact_count({**base, "science": {}, "prunable_remaining": 52, "achieved_sparsity": 0.48})


def test_largest_step_hand_computed():
    """Sparsity 0 -> 0.5 -> 0.9 -> 0.9: the second step removes 80% of the survivors (0.1 / 0.5 kept), the first
    50%; accuracy across it 90 -> 60; the largest fall across a pruning epoch is 30 (epoch 3), not the rise."""
    from suite.report.tables import largest_step
    records = [{"epoch": 1, "sparsity": 0.0, "test_accuracy": 80.0}, {"epoch": 2, "sparsity": 0.5, "test_accuracy": 90.0},
               {"epoch": 3, "sparsity": 0.9, "test_accuracy": 60.0}, {"epoch": 4, "sparsity": 0.9, "test_accuracy": 85.0}]
    step = largest_step(records, "test_accuracy")
    assert step == {"removed": pytest.approx(0.8), "epoch": 3, "before": 90.0, "after": 60.0, "fall": 30.0,
                    "fall_epoch": 3, "final": 85.0}
    loss = [{**r, "test_loss": 100.0 - r["test_accuracy"]} for r in records]  # lower is better: a rise is the fall
    assert largest_step(loss, "test_loss", higher_is_better=False)["fall"] == 30.0
    assert largest_step([{**r, "sparsity": 0.98} for r in records], "test_accuracy") is None  # pruned at init


def test_the_trajectory_names_progressives_last_linear_step_at_98_percent(committed_study):
    """Issue 23: at 98% in 20 epochs the per-epoch linear schedule (target at epoch 10) removes 1 - 0.02 / 0.118
    of the survivors in its last step (sparsity 0.882 after epoch 9), where the accuracy falls by ~39 points."""
    rows = [r for r in committed_study.table("trajectory").rows
            if r["label"] == "progressive" and r["target_sparsity"] == 0.98 and r["epochs_trained"] == 20]
    (row,) = rows
    assert row["removed"] == pytest.approx(1 - 0.02 / 0.118, abs=2e-4) and row["epochs"] == [10]
    assert row["fall_epochs"] == [10] and row["fall"] > 30 and row["final"] > row["after"]
    readme = " ".join((ROOT / "README.md").read_text().split())  # the README quotes this row's numbers
    assert (f"{100 * row['removed']:.1f}% of the survivors at epoch 10, and test accuracy falls from {row['before']:.1f}% "
            f"to {row['after']:.1f}% there before it ends at {row['final']:.1f}%") in readme


@pytest.mark.parametrize("damage,message", [
    (lambda t: t["results"][3].pop("path"), "results[3] is not {path, round, result} as an export writes it"),
    (lambda t: t["results"][0].update(round="x"), "results[0] is not {path, round, result} as an export writes it"),
    (lambda t: t["sweeps"][0].pop("passes"),
     "its 'sweeps' is not a list of {name, passes, wall_time_s, started, finished} as an export writes it"),
    (lambda t: t["skipped"].append("a folder"),
     "its 'skipped' is not a list of {path, status, method, seed, reason} as an export writes it"),
    (lambda t: t.update(results=[]), "a results export without results (its 'results' is not a non-empty list)"),
])
def test_a_damaged_export_to_merge_is_one_error_line_and_nothing_is_written(damage, message, tmp_path, capsys):
    """--merge and --done read an export written elsewhere: a damaged one is named in one line, exit 2."""
    tree = json.loads((ROOT / "docs" / "results" / "gpt_shakespeare.json").read_text())
    damage(tree)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tree))
    (tmp_path / "runs").mkdir()
    code, err, _ = cli(capsys, report.main, [str(tmp_path / "runs"), "--merge", str(bad), "--export",
                                             str(tmp_path / "out.json")])
    assert (code, err) == (2, [f"error: {bad}: {message}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "runs"]

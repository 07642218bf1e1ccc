"""The report end to end: synthetic run folders in the trainer's schema, the CLI as a subprocess."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as sps

from suite import report
from suite.config import (Config, ConfigError, DataConfig, ModelConfig, PruneConfig, TrainConfig,
                          experiment_hash, run_dir, science_settings, to_dict)

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


def _config(method: str, sparsity: float, seed: int) -> Config:
    return Config(method=method, seed=seed, data=DataConfig(name="synthetic"), model=ModelConfig(name="tiny_mlp"),
                  train=TrainConfig(epochs=3), prune=PruneConfig(target_sparsity=sparsity))


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


def _write_run(root: Path, method: str, sparsity: float, seed: int, accuracy: float) -> Path:
    cfg = _config(method, sparsity, seed)
    folder = run_dir(cfg, root)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(to_dict(cfg)))
    targets = [LTH_ROUNDS[0][1], LTH_ROUNDS[1][1], sparsity] if method == "lth" else [sparsity]
    (folder / "metrics.jsonl").write_text(_metrics(cfg, accuracy, targets))
    (folder / "result.json").write_text(json.dumps(_result(cfg, accuracy, sparsity, len(targets), len(targets) - 1)))
    for name in ("mask.safetensors", "model.safetensors"):  # a run's final files (empty: no tensors)
        (folder / name).write_bytes(EMPTY_SAFETENSORS)
    if method == "lth":
        for r, target in enumerate(targets):
            acc = accuracy if r == len(targets) - 1 else LTH_ROUNDS[r][0][seed]
            sub = folder / f"round_{r}"
            sub.mkdir()
            (sub / "result.json").write_text(json.dumps(_result(cfg, acc, target, len(targets), r)))
            (sub / "metrics.jsonl").write_text(_metrics(cfg, acc, [target]))
            (sub / "mask.safetensors").write_bytes(EMPTY_SAFETENSORS)
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
                          capture_output=True, text=True, timeout=120)


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
             ("lth", 0.5, "round_1", "round 1"), ("lth", 0.0, "round_0", "round 0"), ("dense", 0.0, None, "")]
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
        assert row["best_mean"] == pytest.approx(mean + 0.1, rel=1e-12)
        if method != "dense":
            assert row["diff_dense"] == pytest.approx(mean - dense_mean, rel=1e-12)
    # 5 experiments, LTH contributes 2 round groups beside its final one; the final round is not doubled.
    assert len(tables["summary"]) == 7
    assert len(_rows(tables, "summary", method="lth")) == 3
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
    # Holm over the two real p-values (the n = 1 row has none): smaller x 2, larger = max(that, itself).
    p_small, p_large = sorted([paired["primary_p"], unpaired["primary_p"]])
    holm = {p_small: min(1, 2 * p_small), p_large: max(min(1, 2 * p_small), p_large)}
    assert paired["primary_p_holm"] == pytest.approx(holm[paired["primary_p"]], rel=1e-12)
    assert unpaired["primary_p_holm"] == pytest.approx(holm[unpaired["primary_p"]], rel=1e-12)
    assert paired["verdict"] == ("worse" if paired["primary_p_holm"] < 0.05 else "no significant difference")
    [snip] = _rows(tables, "head_to_head", method="snip")
    assert snip["primary_p"] is None and snip["primary_p_holm"] is None and snip["verdict"] == "not tested"


def test_equivalence_published_power_and_skipped(study, json_run):
    _, tables = json_run
    prog = list(_accuracies(study, "progressive", 0.9).values())
    dense = list(_accuracies(study, "dense", 0.0).values())
    [eq] = _rows(tables, "equivalence", method="progressive", target_sparsity=0.9)
    va, vb = sps.tvar(prog) / 3, sps.tvar(dense) / 3
    se, df = math.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    diff = sum(prog) / 3 - sum(dense) / 3
    assert eq["p_lower"] == pytest.approx(sps.t.sf((diff + 0.1) / se, df), rel=1e-10)
    assert eq["p_upper"] == pytest.approx(sps.t.cdf((diff - 0.1) / se, df), rel=1e-10)
    assert eq["equivalent"] is False and eq["outcome"] == "not shown"
    # published: our progressive seeds against 92.0 with a one-sample t-test (df = 2, closed form)
    [ours] = _rows(tables, "published", kind="ours, same method", published_method="progressive")
    mean, sd, _, _ = _textbook_summary(prog)
    t = (mean - 92.0) / (sd / math.sqrt(3))
    assert ours["t"] == pytest.approx(t, rel=1e-10) and ours["p"] == pytest.approx(_p_df2(t), rel=1e-10)
    kinds = [(r["published_method"], r["kind"], r["method"]) for r in tables["published"]]
    assert kinds == [("grasp", "published, not re-run", "grasp"),
                     ("lth", "published, not re-run", "lth"), ("lth", "ours, same method", "lth"),
                     ("lth", "ours, reference method", "progressive"),
                     ("progressive", "published, not re-run", "progressive"),
                     ("progressive", "ours, same method", "progressive")]
    assert "no matching runs" in tables["published"][0]["note"]
    # power: the minimal detectable difference is d* x SD with d* the n = 3 root of power = 0.8
    [pw] = _rows(tables, "power", method="progressive", target_sparsity=0.9)
    assert pw["mdd"] == pytest.approx(pw["min_effect_d"] * sd, rel=1e-12)
    assert sps.nct.sf(sps.t.ppf(0.975, 4), 4, pw["min_effect_d"] * math.sqrt(1.5)) + \
        sps.nct.cdf(-sps.t.ppf(0.975, 4), 4, pw["min_effect_d"] * math.sqrt(1.5)) == pytest.approx(0.8, abs=1e-9)
    skipped = {r["status"]: r for r in tables["not_included"]}
    assert set(skipped) == {"failed", "unfinished"}
    assert skipped["failed"]["reason"] == "NaN loss at epoch 2" and skipped["failed"]["method"] == "grasp"
    assert skipped["unfinished"]["seed"] == 789 and "checkpoint.pt present" in skipped["unfinished"]["reason"]


def test_csv_equals_json(study, published_file, json_run, tmp_path):
    _, tables = json_run
    proc = _cli(str(study), "--format", "csv", "--published", str(published_file))
    assert proc.returncode == 0, proc.stderr
    sections = report.split_csv(proc.stdout)
    assert list(sections) == ["summary", "head_to_head", "equivalence", "published", "power", "not_included"]
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


def test_markdown_and_latex(study, published_file, tmp_path):
    md = _cli(str(study), "--published", str(published_file))
    assert md.returncode == 0, md.stderr
    text = md.stdout
    for heading in ("## 1. Summary", "## 2. Head-to-head against progressive", "## 3. Equivalence to dense",
                    "## 4. Published references", "## 5. Power", "## 6. Runs not included"):
        assert heading in text
    assert "Holm-Bonferroni" in text and "published, not re-run" in text and "NaN loss at epoch 2" in text
    assert "lth (round 1)" in text and "n<2, no tests" in text
    again = _cli(str(study), "--published", str(published_file), "--out", str(tmp_path / "r.md"))
    assert (tmp_path / "r.md").read_text() == text  # deterministic
    tex = _cli(str(study), "--format", "latex", "--published", str(published_file))
    assert tex.returncode == 0, tex.stderr
    body = tex.stdout
    assert body.count(r"\begin{table}") == body.count(r"\end{table}") == 6
    assert body.count(r"\toprule") == body.count(r"\bottomrule") == 6 and r"\hline" not in body
    assert "tiny\\_mlp" in body and "Δ" not in body and "±" not in body and "–" not in body
    assert r"\resizebox" not in body and "Wilcoxon p &" not in body  # the columns a paper prints, unshrunk
    head = body[body.index(r"\label{tab:pp-head-to-head}"):]
    assert head.split(r"\midrule")[0].count("&") == 8  # 9 columns: Target s, Method, n, Δ, CI, g, Holm p, Verdict, Epochs


def test_plots_written(json_run):
    out, tables = json_run
    names = sorted(p.name for p in (out / "plots").iterdir())
    stems = ["dynamics-synthetic-tiny_mlp-s0.5", "dynamics-synthetic-tiny_mlp-s0.9",
             "layers-synthetic-tiny_mlp-s0.5", "layers-synthetic-tiny_mlp-s0.9", "tradeoff-synthetic-tiny_mlp"]
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
        ["summary", "head_to_head", "equivalence", "published", "power", "not_included"])
    summary = json.loads(next(p for p in table_files if p.name.startswith("summary_")).read_text())
    means = summary["data"]
    col = summary["columns"].index("mean")
    assert [row[col] for row in means] == [r["mean"] for r in tables["summary"]]
    assert len(list((run / "files" / "media" / "images").rglob("*.png"))) == 5


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

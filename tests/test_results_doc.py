"""The committed study's pipeline on a tiny real study: export, document, README headline, figures and
animations; and the committed results document, regenerated from its committed export."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from helpers import ROOT, env

TINY = ["data.name=synthetic", "model.name=tiny_mlp", "train.epochs=3", "train.batch_size=64", "train.lr=0.05",
        "prune.target_sparsity=0.75", "lth.rate=0.5", "wandb.mode=disabled"]
SEEDS = (42, 123)
DOC = ROOT / "docs" / "results" / "lenet300_mnist.md"
EXPORT = ROOT / "docs" / "results" / "lenet300_mnist.json"
README_STUB = "# project\n\nIntro.\n\n## Set-up\n\ntext\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """progressive, dense and an LTH chain (0.5, 0.75: 3 rounds) on 2 seeds, trained for real."""
    from accelerate import Accelerator

    from suite.experiment import load_config
    from suite.trainer import run_experiment
    out = tmp_path_factory.mktemp("runs")
    accelerator = Accelerator(cpu=True)
    for method in ("progressive", "dense", "lth"):
        for seed in SEEDS:
            cfg = load_config(None, [*TINY, f"seed={seed}"], method)
            assert run_experiment(cfg, out, accelerator, progress=False).status == "finished"
    return out


def _report(*args):
    proc = subprocess.run([sys.executable, "-m", "suite.report", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def written(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("doc")
    (out / "README.md").write_text(README_STUB)
    _report(study, "--plots", out / "figures", "--doc", out / "study.md", "--export", out / "study.json",
            "--readme", out / "README.md")
    return out


@pytest.mark.slow  # trains the study
def test_export_holds_every_result_and_no_weights(study, written):
    tree = json.loads((written / "study.json").read_text())
    results = tree["results"]
    # 6 run folders + 2 round results per chain (rounds 0 and 1; round 2 is the run's own result)
    assert len(results) == 6 + 2 * 2
    assert sum(1 for r in results if r["round"] is not None) == 4
    assert all("config" not in r["result"] for r in results)
    lth = [r for r in results if r["result"]["method"] == "lth" and r["round"] is None]
    assert all(r["metrics"]["round"] == [2, 2, 2] for r in lth)  # the final round only, one list per key
    from suite.report.export import epoch_records
    first = next(r for r in results if r["round"] is None)  # both shapes read back to the same records
    records = epoch_records(first["metrics"])
    assert len(records) == len(first["metrics"]["epoch"]) and epoch_records(records) == records
    assert records[0] == {k: v[0] for k, v in first["metrics"].items()}
    for r in (r for r in results if r["round"] is None):  # from the mask's header, for the per-layer figure
        sizes = r["layer_sizes"]
        assert list(sizes) == list(r["result"]["layer_sparsity"]) and sum(sizes.values()) == r["result"]["prunable_total"]
    assert (written / "study.json").stat().st_size < 60_000
    # the tables from the export are the tables from the run folders
    from_runs = json.loads(_report(study, "--format", "json"))
    from_export = json.loads(_report(written / "study.json", "--format", "json"))
    assert from_export == from_runs


@pytest.mark.slow  # trains the study
def test_document_and_readme_regenerate_from_the_export(written, tmp_path):
    doc = (written / "study.md").read_text()
    for heading in ("## How it was made", "## Headline", "### 1. Summary", "### 2. Head-to-head against progressive",
                    "### 3. Equivalence to dense", "### 4. Published references", "### 5. Power", "## Figures",
                    "## What it shows"):
        assert heading in doc, heading
    assert "![training_animation](figures/training_animation.gif)" in doc
    assert "Not yet run" in doc and "configs/sweeps/vgg19_vs_grasp.yaml" in doc  # GPU claims, with their sweep
    readme = (written / "README.md").read_text()
    assert readme.startswith("# project\n\nIntro.\n\n<!-- results:study:start") and readme.endswith("## Set-up\n\ntext\n")
    again = tmp_path / "again"
    again.mkdir()
    (again / "README.md").write_text(readme)  # markers present: the block is replaced in place
    from suite import report
    built = report.build_report(written / "study.json", published=report.load_published(report.DEFAULT_PUBLISHED))
    report.write_study_files(built, again / "study.md", again / "README.md", built.meta["recorded"]["figures"])
    assert (again / "study.md").read_text() == doc
    assert (again / "README.md").read_text() == readme


@pytest.mark.slow  # trains the study
def test_headline_line_from_the_numbers(written):
    tree = json.loads((written / "study.json").read_text())
    final = {(r["result"]["method"], r["result"]["seed"]): r["result"] for r in tree["results"] if r["round"] is None}
    import numpy as np
    diff = np.mean([final["lth", s]["final_test_accuracy"] for s in SEEDS]) - \
        np.mean([final["progressive", s]["final_test_accuracy"] for s in SEEDS])
    line = next(x for x in (written / "study.md").read_text().splitlines() if "] lth vs progressive: " in x)
    # its family first, then "group vs reference group" by their labels, Δ = group − reference, as in the tables
    assert line.startswith("- [75%, 3 ep/cycle, ") and f"] lth vs progressive: Δ {diff:+.2f} points, paired t, Holm p " in line
    def cost_of(r):  # results before the cost field: FLOPs over a dense run of the same epochs, times the cycles
        if "train_cost_x_dense_cycle" in r:
            return r["train_cost_x_dense_cycle"]
        return r["train_flops_x_dense"] * r["total_epochs_trained"] / r["epochs"]
    cost = {m: np.mean([cost_of(final[m, s]) for s in SEEDS]) for m in ("lth", "progressive")}
    assert line.endswith(f"; 9 vs 3 epochs, training cost {cost['lth']:.3g}x vs {cost['progressive']:.3g}x in 3-epoch "
                         "dense cycles")
    assert cost["lth"] > 3 * cost["progressive"]  # a chain of 3 rounds costs at least 3 one-cycle runs
    answer = next(x for x in (written / "study.md").read_text().splitlines() if "] Answer (" in x)
    assert answer.startswith("- [75%, 3 ep/cycle, ") and "] Answer (tiny MLP on synthetic data, progressive at " in answer


@pytest.mark.slow  # trains the study
def test_figures_and_animations(written):
    figures = written / "figures"
    for name in ("training_animation.gif", "comparison_animation.gif"):
        path = figures / name
        with Image.open(path) as gif:
            assert gif.format == "GIF" and gif.n_frames == 3  # one frame per epoch (3 epochs, cap 40)
            assert 850 <= gif.size[0] <= 950  # about 900 px wide, as legible as the research's
        assert path.stat().st_size < 1_000_000
    pngs = sorted(p.name for p in figures.glob("*.png"))
    # named by their family in words: sparsity in percent, epochs per cycle, init
    assert pngs == ["dynamics-75-3ep-kaiming.png", "forest-75-3ep-kaiming.png", "frontier-75-kaiming.png",
                    "layers-75-3ep-kaiming.png", "tradeoff-3ep-kaiming.png"]
    for name in pngs:
        with Image.open(figures / name) as png:
            assert png.format == "PNG" and png.size[0] > 600
    from suite.report.figures import GIF_FRAMES, gif_frames
    assert len(gif_frames(380)) == GIF_FRAMES and gif_frames(380)[-1] == 380 and gif_frames(3) == [1, 2, 3]


@pytest.mark.slow  # trains the study
def test_tradeoff_slots_and_offsets(written, tmp_path):
    """One slot per sparsity run (no axis position between sparsities never run), variants offset within it."""
    from suite import report
    from suite.report import figures as plots
    assert [plots.tradeoff_x(1, shift) for shift in (-1, 0, 1)] == [1 - 0.06, 1, 1 + 0.06]
    built = report.build_report(written / "study.json")
    paths = plots.plot_tradeoff(built.groups, tmp_path / "t", plots.method_colors(built.groups))
    assert [p.name for p in paths] == ["t.png", "t.pdf"] and all(p.stat().st_size > 10_000 for p in paths)


@pytest.mark.slow  # trains the study
def test_claim_verdicts_quote_their_test(written):
    from suite import report
    from suite.report import study
    runs_mean = report.build_report(written / "study.json")
    (prog,) = [g for g in runs_mean.groups if g.method == "progressive"]
    mean = sum(prog.accuracies) / 2

    def verdict(accuracy):
        pub = report.Published("progressive", "tiny_mlp", "synthetic", 0.75, accuracy, float("nan"), "made up",
                               False, "", "", 0.0005)
        built = report.build_report(written / "study.json", published=[pub])
        (text,) = study.claim_paragraphs(built, [pub])
        return text
    assert "Confirmed and exceeded: our mean is significantly higher" in verdict(mean - 50)
    low = verdict(mean + 50)  # no seed config states a protocol for tiny_mlp: lower at the full budget
    assert ("Differs from the published value under this suite's recipe (3 epochs per cycle), not the progressive "
            "paper's own training recipe: our mean is significantly lower") in low
    assert "efuted" not in low and f"mean {mean:.2f}" in low and "3 epochs trained" in low


# each committed study: (name, whether its report quotes configs/published.yaml); its plan is configs/reports/<name>.yaml
COMMITTED = (("lenet300_mnist", True), ("gpt_shakespeare", False))  # the GPT study: --published none


@pytest.mark.parametrize("name,quotes_published", COMMITTED)
def test_committed_document_equals_its_regeneration(name, quotes_published, tmp_path):
    """The committed document and README headline are what the committed export gives."""
    doc, export = ROOT / "docs" / "results" / f"{name}.md", ROOT / "docs" / "results" / f"{name}.json"
    if not export.is_file():
        pytest.skip(f"{export.relative_to(ROOT)} is not committed yet (the study has not run)")
    from suite import report
    from suite.report import study
    from suite.report.claims import load_plan
    published = report.load_published(report.DEFAULT_PUBLISHED) if quotes_published else []
    command = json.loads(export.read_text())["command"]  # the command the export records made the document
    assert ("--published none" not in command) == quotes_published, command
    built = report.build_report(export, published=published,
                                plan=load_plan(ROOT / "configs" / "reports" / f"{name}.yaml"))
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    report.write_study_files(built, tmp_path / doc.name, readme, built.meta["recorded"]["figures"],
                             doc_link=doc.relative_to(ROOT).as_posix())
    assert (tmp_path / doc.name).read_text() == doc.read_text()
    start = study.README_START.format(name=doc.stem)
    assert start in (ROOT / "README.md").read_text()
    assert readme.read_text() == (ROOT / "README.md").read_text()


def test_committed_summary_lists_each_set_of_runs_once():
    """The committed study's Summary: no two rows are the same trainings. Both LTH chains' round 0 (the 20-epoch
    dense runs) are one row that names the other, at the chains' 10 seeds; the dense row beside it holds 5 of
    those trainings (seeds 42 ... 999), not the same set, so it stays. The LTH budget's chains of 2 x 80 and 4 x
    40 epochs start from the dense models of 80 and 40 epochs: each dense row names its chain's round 0."""
    if not EXPORT.is_file():
        pytest.skip(f"{EXPORT.relative_to(ROOT)} is not committed yet (the study has not run)")
    from suite import report
    from suite.report.tables import same_runs
    built = report.build_report(EXPORT)
    by_id = {g.id: g for g in built.groups}
    shown = [by_id[r["group"]] for r in built.table("summary").rows]
    assert [(a.label, b.label) for i, a in enumerate(shown) for b in shown[i + 1:] if same_runs(a, b)] == []
    assert len(shown) == len(built.groups) - 3
    same = {r["label"]: (r["same_runs_as"], r["n"]) for r in built.table("summary").rows if r.get("same_runs_as")}
    assert same == {"lth [rate 0.43, round 0]": (["lth [round 0]"], 10), "dense [80 ep]": (["lth [80 ep, round 0]"], 5),
                    "dense [40 ep]": (["lth [40 ep, round 0]"], 5)}
    [chains] = [r for r in built.table("summary").rows if r["label"] == "lth [rate 0.43, round 0]"]
    [dense] = [r for r in built.table("summary").rows if r["label"] == "dense"]
    assert dense["seeds"] == [42, 123, 456, 789, 999] and set(dense["seeds"]) < set(chains["seeds"])
    assert "| also lth [round 0] " in DOC.read_text()  # the column is padded to its widest cell

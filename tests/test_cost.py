"""suite.cost: deployed formats equal the masked model; the command writes cost.json; bad input is
one line and exit 2. Nothing here is timed: speed is measured by the command, never asserted."""
import json

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from suite import cost
from suite import experiment as E
from suite import masks as M
from suite.data import DataSpec
from suite.models import build_model
from suite.trainer import run_experiment
from tests.helpers import TINY

TOLERANCE = 1e-5  # fp32 logits of these tiny models are O(1): compaction and CSR change only the summation order


def _randomise_batchnorm(model: nn.Module) -> None:
    """Trained-looking BatchNorm: a pruned channel then outputs a non-zero constant that compaction must fold."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.weight.data, m.bias.data, m.running_mean):
                t.copy_(torch.randn(t.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _masked(model: nn.Module, structure: str, sparsity: float, keep_last_dense: bool):
    weights = M.prunable_weights(model, keep_last_dense=keep_last_dense)
    mask = M.mask_at_sparsity(M.magnitude_scores(weights), sparsity, structure=structure)
    with torch.no_grad():
        for n, w in weights.items():
            w.mul_(mask[n])
    return mask


@pytest.mark.parametrize("name, shape", [("tiny_cnn", (3, 8, 8)), ("tiny_mlp", (3, 8, 8)), ("lenet300", (1, 28, 28))])
def test_compacted_model_is_smaller_and_equals_the_masked_model(name, shape):
    torch.manual_seed(0)
    model = build_model(name, DataSpec("x", shape, 10, 1, 1))
    _randomise_batchnorm(model)
    model.eval()
    mask = _masked(model, "channel", 0.6, keep_last_dense=True)
    x = torch.randn(16, *shape)
    compacted, why = cost.compact(model, mask, x)
    assert why == "ok"
    with torch.no_grad():
        assert float((compacted(x) - model(x)).abs().max()) <= TOLERANCE
    alive = {n: int(M.rows_of(m).any(1).sum()) for n, m in mask.items()}
    first = next(iter(mask))
    layer = compacted.get_submodule(first.rsplit(".", 1)[0])
    assert layer.weight.shape[0] == alive[first] < mask[first].shape[0]  # physically fewer outputs
    if name == "tiny_cnn":
        assert compacted.bn1.num_features == alive["conv1.weight"]
        assert compacted.conv2.conv.in_channels == alive["conv1.weight"]  # carries the folded bias map
        assert compacted.fc.in_features == 4 * alive["conv2.weight"]
    assert cost.saved_bytes(cost._format_tensors(compacted)) < cost.saved_bytes(model.state_dict())


def test_csr_model_equals_the_masked_model_and_names_its_tensors():
    torch.manual_seed(1)
    model = build_model("tiny_cnn", DataSpec("x", (3, 8, 8), 10, 1, 1)).eval()
    mask = _masked(model, "unstructured", 0.9, keep_last_dense=False)
    csr, why = cost.to_csr(model, mask)
    assert why == "ok" and isinstance(csr.fc, cost.CSRLinear)
    x = torch.randn(32, 3, 8, 8)
    with torch.no_grad():
        assert float((csr(x) - model(x)).abs().max()) <= TOLERANCE
    tensors = cost._format_tensors(csr)
    assert tensors["fc.values"].numel() == int(mask["fc.weight"].sum())
    assert tensors["fc.col_indices"].dtype == torch.int32 and "fc.weight" not in tensors


def test_2_4_detection_and_refusal_off_cuda():
    m = torch.tensor([[1, 1, 0, 0, 0, 1, 0, 1]], dtype=torch.bool)
    assert cost.is_2_4(m) and not cost.is_2_4(torch.ones(1, 8, dtype=torch.bool))
    assert "need a CUDA GPU" in cost.semi_structured_support(torch.device("cpu"))


def test_cost_rows_speed_up_and_size_ratio():
    c = {"run": "r", "method": "progressive", "model": "m", "structure": "channel", "achieved_sparsity": 0.5,
         "device": "cpu", "threads": 1, "batches": [1, 32, 256], "formats": {
             "dense_masked": {"status": "ok", "latency_s": {"1": 2.0, "32": 4.0, "256": 8.0}, "size_bytes": 1000},
             "compacted": {"status": "ok", "latency_s": {"1": 1.0, "32": 1.0, "256": 2.0}, "size_bytes": 250},
             "semi_structured_2_4": {"status": "skipped", "reason": "no GPU"}}}
    rows = {r["format"]: r for r in cost.cost_rows([c])}
    assert rows["dense_masked"]["speedup_b1"] == 1.0 and rows["dense_masked"]["size_ratio"] == 1.0
    assert [rows["compacted"][f"speedup_b{b}"] for b in (1, 32, 256)] == [2.0, 4.0, 4.0]
    assert rows["compacted"]["size_ratio"] == 0.25 and rows["compacted"]["latency_ms_b256"] == 2000.0
    assert rows["semi_structured_2_4"]["speedup_b1"] is None and rows["semi_structured_2_4"]["reason"] == "no GPU"


def test_cost_command_on_a_finished_run_writes_cost_json(tmp_path, capsys):
    cfg = E.load_config(None, [*TINY, "train.epochs=2", "wandb.mode=disabled", "prune.structure=channel",
                               "prune.keep_last_dense=true", "prune.target_sparsity=0.5"])
    folder = run_experiment(cfg, tmp_path, Accelerator(cpu=True), progress=False).run_dir
    assert cost.main([str(folder), "--device", "cpu", "--warmup", "0", "--repeats", "1"]) == 0
    data = json.loads((folder / "cost.json").read_text())
    assert {"run", "method", "model", "structure", "achieved_sparsity", "device", "threads", "torch", "batches",
            "memory", "formats"} <= set(data)
    assert data["structure"] == "channel" and data["batches"] == [1, 32, 256]
    assert list(data["formats"]) == ["dense_masked", "compacted", "csr", "semi_structured_2_4"]
    for name in ("dense_masked", "compacted", "csr"):
        f = data["formats"][name]
        assert f["status"] == "ok" and f["max_abs_diff"] <= f["tolerance"]
        assert set(f["latency_s"]) == set(f["throughput_per_s"]) == {"1", "32", "256"}
        assert {"backend", "dtype", "size_bytes", "peak_memory_bytes"} <= set(f)
    assert data["formats"]["dense_masked"]["max_abs_diff"] == 0.0
    assert data["formats"]["compacted"]["size_bytes"] < data["formats"]["dense_masked"]["size_bytes"]
    assert data["formats"]["semi_structured_2_4"]["status"] == "skipped"
    assert "| compacted" in capsys.readouterr().out
    # the report shows it beside the accuracy tables, from the run folder and from an export of it
    from suite import report
    from suite.report.export import export_tree, write_export
    built = report.build_report(tmp_path)
    rows = {r["format"]: r for r in built.table("measured_cost").rows}
    dense, compacted = data["formats"]["dense_masked"], data["formats"]["compacted"]
    assert rows["compacted"]["speedup_b32"] == dense["latency_s"]["32"] / compacted["latency_s"]["32"]
    assert rows["compacted"]["size_ratio"] == compacted["size_bytes"] / dense["size_bytes"]
    assert rows["semi_structured_2_4"]["status"] == "skipped"
    # beside it, the accuracy of the group the measured run belongs to (matched on experiment and seed)
    accuracy = json.loads((folder / "result.json").read_text())["final_test_accuracy"]
    assert {(r["group"], r["group_mean"], r["group_n"]) for r in rows.values()} == \
        {("progressive", accuracy, 1)}  # the study's label: one group needs no settings
    assert "Measured cost on this machine" in report.render_markdown(built)
    write_export(export_tree(built.groups, built.skipped, [], str(tmp_path), tmp_path, "cmd", None),
                 tmp_path / "export.json")
    again = report.build_report(tmp_path / "export.json")
    # the export keeps every number (its JSON sorts keys, so the formats come in another order)
    assert sorted(again.table("measured_cost").rows, key=lambda r: r["format"]) == \
        sorted(built.table("measured_cost").rows, key=lambda r: r["format"])


def test_bad_folders_are_one_line_and_exit_2(tmp_path, capsys):
    assert cost.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: not a run folder"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    assert cost.main([str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'run'}: not a finished run: pending")


def test_gpu_check_refuses_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the refusal is for machines without one")
    from suite import bench
    assert bench.main(["--gpu-check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --gpu-check: no CUDA device is visible to torch; run it on a machine with a GPU"]


# --- issue 25 case 17: a fixed thread count, the spread recorded, noise flagged -----------------------

def test_latency_is_the_median_and_its_spread_the_interquartile_range_over_it(monkeypatch):
    ticks = iter([0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 8.0])  # calls of 1, 1, 1 and 5 s
    monkeypatch.setattr(cost.time, "perf_counter", lambda: next(ticks))
    assert cost.latency(lambda: None, torch.device("cpu"), 0, 4) == (1.0, 1.0)  # quartiles 1 and 2: (2 - 1) / 1
    ticks = iter([0.0, 5.0])
    assert cost.latency(lambda: None, torch.device("cpu"), 0, 1) == (5.0, 0.0)  # one call: no spread to measure


@pytest.mark.parametrize("load, cores, spreads, reasons", [
    (0.5, 2, [0.1, 0.25], []),
    (3.0, 2, [0.1], ["load average 3.00 on 2 cores"]),
    (0.5, 2, [0.3, 0.1], ["latency spread 30% (interquartile range over median) above 25%"]),
    (9.0, 2, [5.5], ["load average 9.00 on 2 cores", "latency spread 550% (interquartile range over median) above 25%"]),
])
def test_a_measurement_under_load_or_with_a_wide_spread_is_noise(load, cores, spreads, reasons):
    assert cost.noise(load, cores, spreads) == reasons


@pytest.mark.parametrize("asked, omp, chosen", [
    (None, None, (1, "the default; --threads n sets it")),  # before: torch's choice, every core
    (None, "3", (3, "OMP_NUM_THREADS")),
    (2, "3", (2, "--threads")),
])
def test_cost_measures_at_a_fixed_thread_count(asked, omp, chosen, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if omp:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert cost.cost_threads(asked) == chosen


def test_cost_under_load_is_written_flagged_and_warned(tmp_path, capsys, monkeypatch):
    """Before: a 550x speed-up measured at torch's default threads under load went into cost.json unflagged."""
    from suite.threads import available_cores
    cfg = E.load_config(None, [*TINY, "train.epochs=2", "wandb.mode=disabled"])
    folder = run_experiment(cfg, tmp_path, Accelerator(cpu=True), progress=False).run_dir
    capsys.readouterr()  # the run's own lines
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cost.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    threads = torch.get_num_threads()
    try:
        assert cost.main([str(folder), "--device", "cpu", "--warmup", "0", "--repeats", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    data = json.loads((folder / "cost.json").read_text())
    cores = available_cores()
    assert (data["threads"], data["load_1min"], data["cores"]) == (1, 9.0, cores)
    assert data["noisy"] == [f"load average 9.00 on {cores} cores"]  # one call: no spread
    assert data["formats"]["dense_masked"]["latency_spread"] == {"1": 0.0, "32": 0.0, "256": 0.0}
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0] == "cost: 1 thread (the default; --threads n sets it), median of 1 timed calls"
    assert err[-1] == (f"warning: {folder}: timings are noise, not this machine's speed (load average 9.00 on "
                       f"{cores} cores); cost.json says so (noisy); measure again on an idle machine")
    assert "| ok (noisy)" in captured.out
    assert all(r["noisy"] for r in cost.cost_rows([data]))


def test_cost_of_a_finished_ablation_reads_its_own_config_only(tmp_path, monkeypatch, capsys):
    """Issue 25, case 12: from another directory, or after its source moved, suite.cost failed ("ablate.source:
    runs/...: no such run folder") re-reading the source although config.json says what ran."""
    here = tmp_path / "study"
    here.mkdir()
    monkeypatch.chdir(here)
    tiny = [*TINY, "train.epochs=1", "wandb.mode=disabled", "prune.target_sparsity=0.8"]
    source = run_experiment(E.load_config(None, tiny, method="snip"), "runs", Accelerator(cpu=True), progress=False)
    relative = source.run_dir  # runs/<experiment>/seed_42: a path from this directory
    assert not relative.is_absolute()
    ablation = run_experiment(E.load_config(None, [f"ablate.source={relative}"], method="shuffle"), "runs",
                              Accelerator(cpu=True), progress=False).run_dir.resolve()
    (here / relative.parent).rename(tmp_path / "moved")  # the source moved away
    monkeypatch.chdir(tmp_path)  # and another directory
    assert cost.main([str(ablation), "--device", "cpu", "--warmup", "0", "--repeats", "1"]) == 0
    data = json.loads((ablation / "cost.json").read_text())
    assert (data["method"], data["target_sparsity"], data["formats"]["dense_masked"]["status"]) == ("shuffle", 0.8, "ok")
    err = capsys.readouterr().err.strip().splitlines()  # a busy machine adds a noise warning (case 17)
    assert [line for line in err if not line.startswith("warning: ")] == [
        "cost: 1 thread (OMP_NUM_THREADS), median of 1 timed calls", f"cost: {ablation}"]


def test_a_mask_of_other_shapes_is_one_line_exit_2(tmp_path, capsys):
    """Issue 25, case 13: the right layer names in other shapes exited 1 "unexpected RuntimeError"."""
    from suite.results import RunFolder, save_tensors
    cfg = E.load_config(None, [*TINY, "train.epochs=2", "wandb.mode=disabled"])
    folder = run_experiment(cfg, tmp_path, Accelerator(cpu=True), progress=False).run_dir
    mask = RunFolder(folder).read_mask()
    save_tensors(folder / "mask.safetensors", {n: (m.t().contiguous() if n == "fc1.weight" else m) for n, m in mask.items()})
    assert RunFolder(folder).finished()  # the counts are the result's: only the shapes are wrong
    assert cost.main([str(folder), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "cost: 1 thread (OMP_NUM_THREADS), median of 20 timed calls",
        f"cost: {folder}", f"error: {folder}: mask.safetensors has fc1.weight of shape [192, 32], but tiny_mlp's "
        "fc1.weight is [32, 192]"]

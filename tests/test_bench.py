"""The benchmark runs end to end on synthetic data and writes every section; no timing is asserted
(shared machines are noisy), only structure, exact counts and the arithmetic of derived numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from suite import bench as B
from suite.data import DeviceData, TorchvisionData
from suite.provenance import cpu_name

ROOT = Path(__file__).resolve().parents[1]

LENET_WEIGHTS = 784 * 300 + 300 * 100 + 100 * 10  # 266,200 prunable weights, biases excluded


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One real `python -m suite.bench --quick` run on LeNet-300-100 and synthetic data."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, "-m", "suite.bench", "--quick", "--models", "lenet300", "--synthetic",
                           "--threads", "1", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def positive(*values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values)


@pytest.mark.slow  # the real bench run (module fixture)
def test_report_has_every_section(quick):
    report, _ = quick
    assert list(report) == ["device", "quick", "models", "machine", "load_start", "training", "gpu_epoch",
                            "mask_update", "data_path", "openlth", "gpt", "targets", "load_end", "seconds"]
    assert (report["device"], report["quick"], report["models"]) == ("cpu", True, ["lenet300"])
    m = report["machine"]
    assert list(m) == ["cpu", "cores", "torch_threads", "torch", "python", "gpu", "label"]
    assert (m["cores"], m["torch_threads"], m["torch"], m["gpu"]) == (os.cpu_count(), 1, torch.__version__, None)
    assert m["label"] == f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}"
    assert report["gpu_epoch"] is None  # CPU run
    assert report["gpt"] is None  # not asked for
    assert positive(report["seconds"])


@pytest.mark.slow  # the real bench run
def test_training_rows(quick):
    report, _ = quick
    (row,) = report["training"]
    assert list(row) == ["machine", "load", "model", "dataset", "precision", "channels_last", "batch_size", "steps",
                         "repeats", "sparsity", "dense_images_per_s", "masked_images_per_s", "ratio",
                         "eval_images_per_s"]
    assert row["machine"] == report["machine"]["label"]
    assert (row["model"], row["dataset"], row["precision"], row["channels_last"]) == (
        "lenet300", "synthetic 1x28x28", "fp32", False)
    assert (row["batch_size"], row["steps"], row["repeats"]) == (128, 50, 3)
    assert row["sparsity"] == round(0.9 * LENET_WEIGHTS) / LENET_WEIGHTS == 0.9
    assert positive(row["dense_images_per_s"], row["masked_images_per_s"], row["ratio"])
    assert row["eval_images_per_s"] is None  # measured on a GPU only


@pytest.mark.slow  # the real bench run
def test_mask_update_rows(quick):
    report, _ = quick
    (row,) = report["mask_update"]
    assert list(row) == ["machine", "load", "model", "weights", "from_sparsity", "to_sparsity", "sparsity",
                         "repeats", "topk_s", "install_s", "total_s"]
    assert (row["model"], row["weights"], row["from_sparsity"], row["to_sparsity"], row["repeats"]) == (
        "lenet300", LENET_WEIGHTS, 0.8, 0.9, 2)
    assert row["sparsity"] == 0.9
    assert positive(row["topk_s"], row["install_s"], row["total_s"])


@pytest.mark.slow  # the real bench run
def test_data_path_rows(quick):
    report, _ = quick
    assert [(r["dataset"], r["augment"]) for r in report["data_path"]] == [
        ("synthetic mnist", False), ("synthetic cifar10", True)]
    for row in report["data_path"]:
        assert list(row) == ["machine", "load", "dataset", "augment", "batches", "images", "device_images_per_s",
                             "torchvision_images_per_s", "torchvision_workers", "torchvision_by_workers", "speedup"]
        assert (row["batches"], row["images"], row["torchvision_workers"]) == (10, 1280, 0)
        assert list(row["torchvision_by_workers"]) == ["0"]
        assert row["torchvision_images_per_s"] == row["torchvision_by_workers"]["0"]
        assert positive(row["device_images_per_s"], row["torchvision_images_per_s"])
        assert row["speedup"] == row["device_images_per_s"] / row["torchvision_images_per_s"]


@pytest.mark.slow  # the real bench run
def test_openlth_row(quick):
    report, _ = quick
    row = report["openlth"]
    assert list(row) == ["machine", "load", "model", "dataset", "train_images", "test_images", "sparsity", "epochs",
                         "train_s", "eval_s", "epoch_s", "run_epochs", "run_epoch_s", "run_sparsity", "bare_s",
                         "epoch_over_bare", "openlth_epoch_s", "openlth_train_s", "openlth_bare_s",
                         "speedup_vs_openlth"]
    # the full MNIST shape: 468 batches of 128 (the last partial batch dropped) and 10,000 test images
    assert (row["dataset"], row["train_images"], row["test_images"]) == ("synthetic 1x28x28", 59904, 10000)
    assert (row["sparsity"], row["run_sparsity"], row["epochs"], row["run_epochs"]) == (0.9, 0.9, 2, 2)
    assert positive(row["train_s"], row["eval_s"], row["epoch_s"], row["run_epoch_s"], row["bare_s"])
    assert row["epoch_over_bare"] == row["epoch_s"] / row["bare_s"]
    assert (row["openlth_epoch_s"], row["openlth_train_s"], row["openlth_bare_s"]) == (15.3, 12.4, 0.88)
    assert row["speedup_vs_openlth"] == 15.3 / row["epoch_s"]


@pytest.mark.slow  # the real bench run
def test_targets_and_printed_tables(quick):
    report, stdout = quick
    names = [t["target"] for t in report["targets"]]
    assert names == ["LeNet-300-100 / MNIST epoch incl. evaluation, masks 90%",
                     "LeNet-300-100 / MNIST epoch over bare compute",
                     "masked / dense step time, lenet300 (fp32)",
                     "global threshold + mask update, 0.3M weights (lenet300)",
                     "device data path / torchvision, synthetic mnist",
                     "device data path / torchvision, synthetic cifar10"]
    measured = [report["openlth"]["epoch_s"], report["openlth"]["epoch_over_bare"], report["training"][0]["ratio"],
                report["mask_update"][0]["total_s"], *(r["speedup"] for r in report["data_path"])]
    for target, value in zip(report["targets"], measured):
        assert target["measured"] == value
        assert isinstance(target["met"], bool)
        assert target["verdict"].startswith("met by " if target["met"] else "missed by ")
    for title in ("training throughput", "global threshold + mask update", "data path", "OpenLTH head to head",
                  "targets (issues #5 and #22)"):
        assert title in stdout


def test_verdict_says_met_or_missed_by_how_much():
    assert B.verdict(1.2, 1.5, "max", " s") == (True, "met by 0.3 s")
    assert B.verdict(1.6, 1.5, "max", " s") == (False, "missed by 0.1 s")
    assert B.verdict(1.5, 1.5, "max", " s") == (True, "met by 0 s")  # the limit itself meets a <= target
    assert B.verdict(1.071, 1.05, "max", "pts") == (False, "missed by 2.1 points")
    assert B.verdict(1.0114, 1.05, "max", "pts") == (True, "met by 3.9 points")
    assert B.verdict(12.0, 3.0, "min", "x") == (True, "met by 9x")
    assert B.verdict(2.0, 3.0, "min", "x") == (False, "missed by 1x")
    assert B.verdict(None, 3.0, "min", "x") == (None, "not measured")
    with pytest.raises(ValueError, match="unknown target kind 'between'"):
        B.verdict(1.0, 2.0, "between")


def test_gpu_target_not_measured_without_resnet18_rows():
    report = {"device": "cuda", "openlth": None, "training": [], "mask_update": [], "data_path": [],
              "gpu_epoch": None}
    targets = B.check_targets(report)
    assert [(t["target"], t["measured"], t["met"], t["verdict"]) for t in targets] == [
        ("LeNet-300-100 / MNIST epoch incl. evaluation, masks 90%", None, None, "not measured"),
        ("LeNet-300-100 / MNIST epoch over bare compute", None, None, "not measured"),
        ("global threshold + mask update, 20M weights", None, None, "not measured"),
        ("ResNet-18 / CIFAR-10 epoch, bf16 + channels_last, masks 90%", None, None, "not measured"),
    ]


def test_gpu_epoch_extrapolates_390_steps_and_10000_test_images():
    row = {"model": "resnet18", "precision": "bf16", "channels_last": True, "masked_images_per_s": 49920.0,
           "eval_images_per_s": 20000.0, "steps": 31, "dataset": "cifar10_subset", "load": 0.5, "sparsity": 0.9}
    out = B.gpu_epoch([row], {"label": "a GPU"})
    assert (out["train_images"], out["train_s"], out["eval_s"], out["epoch_s"]) == (49920, 1.0, 0.5, 1.5)
    assert out["note"] == ("extrapolated from 31 measured steps of cifar10_subset to 390 steps "
                           "+ 10,000 test images")


def test_cut_epochs_keeps_the_first_batches_of_the_real_plan():
    source = B.synthetic_source("mnist", 640, 128)
    kw = dict(batch_size=128, seed=3, rank=0, world_size=1, device="cpu", augment=True)
    full, cut = DeviceData(source, **kw), DeviceData(source, **kw)
    assert B.cut_epochs(cut, 2) == 2
    assert B.cut_epochs(DeviceData(source, **kw), 9) == 5  # never more than the epoch has
    got, want = list(cut.train_batches(4)), list(full.train_batches(4))[:2]
    assert len(got) == 2
    for (x, y), (x0, y0) in zip(got, want):
        assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("name, shape, augmentable", [("mnist", (1, 28, 28), False), ("cifar10", (3, 32, 32), True)])
def test_synthetic_source_feeds_both_loaders_the_same_images(name, shape, augmentable):
    source = B.synthetic_source(name, 256, 128)
    assert (source.spec.input_shape, source.train_x.dtype, source.augmentable) == (shape, torch.uint8, augmentable)
    assert torch.equal(torch.bincount(source.train_y), torch.full((10,), 25) + (torch.arange(10) < 6))
    kw = dict(batch_size=128, seed=0, rank=0, world_size=1, device="cpu", augment=False)
    for (x, y), (x0, y0) in zip(DeviceData(source, **kw).train_batches(0),
                                TorchvisionData(source, **kw).train_batches(0)):
        assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("args, message", [
    (["--models", "lenet300", "nope"], "error: --models: unknown nope (valid: lenet300, resnet18, vgg19, gpt_char)"),
    (["--device", "tpu"], "error: --device: 'tpu' is not one of cpu, cuda"),
    (["--threads", "0"], "error: --threads: must be at least 1, got 0"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert B.main(args) == 2
    assert capsys.readouterr().err.splitlines() == [message]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_cuda_without_a_gpu_is_refused(capsys):
    assert B.main(["--device", "cuda"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --device cuda: no CUDA device is visible to torch"]


@pytest.mark.slow  # times GPT steps
def test_gpt_row_and_its_targets():
    """The GPT section in-process on the synthetic text: dense, 80% masks and a plain loop of one model."""
    from suite.bench.gpt import bench_gpt

    torch.set_num_threads(1)
    plan = B.Plan(device="cpu", quick=True, models=("gpt_char",), data_root="", synthetic=True)
    row = bench_gpt(plan, B.machine("cpu"))
    assert (row["model"], row["dataset"], row["batch_size"], row["context"], row["threads"]) == (
        "gpt_char", "synthetic_text", 12, 64, 1)
    assert row["sparsity"] == round(0.8 * 786_432) / 786_432  # the block matrices only
    assert positive(row["dense_tokens_per_s"], row["masked_tokens_per_s"], row["plain_tokens_per_s"],
                    row["masked_over_dense"], row["suite_over_plain"], row["enforce_ms"])
    assert row["tokens_per_s_per_thread"] == row["dense_tokens_per_s"]
    assert row["dense_step_ms"] == pytest.approx(1e3 * 12 * 64 / row["dense_tokens_per_s"])
    report = {"device": "cpu", "openlth": None, "training": [], "mask_update": [], "data_path": [], "gpt": row}
    names = [t["target"] for t in B.check_targets(report)]
    assert "masked / dense step time, gpt_char (masks 80% of the block matrices)" in names
    assert "runner step / plain PyTorch loop, gpt_char" in names

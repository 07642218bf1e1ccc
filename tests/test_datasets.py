"""The dataset registry and the character-level text data: splits, windows, seeded plans, rank
shards, held-out windows, the validation carve, the file check, and the real Tiny Shakespeare."""
import hashlib
from pathlib import Path

import pytest
import torch

from helpers import run_cli
from suite.config import DataConfig
from suite.datasets import DATASETS, build_data, dataset
from suite.datasets.text import text_source
from suite.errors import ConfigError
from suite.preflight import data_files_problem, known_spec

SHARED = Path("/work/shared/data")  # the offline data of this project's machines (README: data.root)
REAL = SHARED / "tinyshakespeare" / "input.txt"


def text_cfg(**kw) -> DataConfig:
    return DataConfig(name="synthetic_text", **{"synthetic_train": 1000, "context": 8, **kw})


def test_every_dataset_says_its_metric_and_direction():
    metrics = {name: (cls.metric, cls.lower_is_better) for name, cls in DATASETS.items()}
    assert metrics["shakespeare_char"] == metrics["synthetic_text"] == ("test_loss", True)
    assert all(metrics[n] == ("test_accuracy", False) for n in ("mnist", "mnist1d", "cifar10", "cifar10_subset",
                                                                "synthetic"))


def test_text_splits_vocabulary_and_windows_by_hand():
    text = "abcdefghij" * 10  # 100 characters, 10 distinct
    src = text_source("t", text, context=4, val_size=20)
    assert src.vocab == "abcdefghij"
    assert (len(src.train), len(src.val), len(src.test)) == (70, 20, 10)  # 90 / 10, then 20 off the end of training
    assert src.train[:4].tolist() == [0, 1, 2, 3] and src.val[0].item() == 70 % 10
    # an epoch: floor(70 / 4) windows; held out: (n - 1) // 4 non-overlapping windows
    assert (src.spec.n_train, src.spec.n_val, src.spec.n_test) == (17, 4, 2)
    assert (src.spec.input_shape, src.spec.num_classes) == ((4,), 10)


def test_held_out_windows_are_non_overlapping_and_the_same_for_every_seed():
    a = build_data(text_cfg(), batch_size=4, seed=1)
    b = build_data(text_cfg(), batch_size=4, seed=2)
    xa, ya = zip(*a.test_batches())
    xb, _ = zip(*b.test_batches())
    x, y = torch.cat(xa), torch.cat(ya)
    assert torch.equal(x, torch.cat(xb))
    test = a.source.test
    assert x.shape == (a.spec.n_test, 8) == ((100 - 1) // 8, 8)  # 100 test characters of 1,000
    assert torch.equal(x.flatten(), test[: 12 * 8]) and torch.equal(y.flatten(), test[1: 12 * 8 + 1])


def test_training_windows_follow_the_seed_and_epoch_and_targets_shift_by_one():
    data = build_data(text_cfg(), batch_size=4, seed=3)
    assert data.steps_per_epoch == (900 // 8) // 4 == 28
    x, y = next(iter(data.train_batches(0)))
    assert x.shape == y.shape == (4, 8) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    again = next(iter(build_data(text_cfg(), batch_size=4, seed=3).train_batches(0)))[0]
    other_epoch = next(iter(data.train_batches(1)))[0]
    other_seed = next(iter(build_data(text_cfg(), batch_size=4, seed=4).train_batches(0)))[0]
    assert torch.equal(x, again) and not torch.equal(x, other_epoch) and not torch.equal(x, other_seed)


def test_ranks_take_disjoint_parts_of_each_global_batch():
    whole = [x for x, _ in build_data(text_cfg(), batch_size=4, seed=0).train_batches(0)]
    parts = [[x for x, _ in build_data(text_cfg(), batch_size=4, seed=0, rank=r, world_size=2).train_batches(0)]
             for r in (0, 1)]
    for k, batch in enumerate(whole):
        assert torch.equal(batch[0::2], parts[0][k]) and torch.equal(batch[1::2], parts[1][k])


def test_validation_carve_and_scoring_draws():
    data = build_data(text_cfg(val_size=100), batch_size=4, seed=0)
    assert (len(data.source.train), len(data.source.val)) == (800, 100)
    assert data.spec.n_val == 99 // 8 and data.spec.n_train == 800 // 8
    assert sum(len(x) for x, _ in data.val_batches()) == 12
    assert [x.shape for x, _ in data.scoring_batches(2)] == [(4, 8), (4, 8)]
    balanced = data.class_balanced(2)  # 2 x vocabulary windows: no classes to balance in text
    assert sum(len(x) for x, _ in balanced) == 2 * data.spec.num_classes
    with pytest.raises(ConfigError, match=r"data\.val_size: 900 characters leave fewer than a window"):
        build_data(text_cfg(val_size=900), batch_size=4, seed=0)
    with pytest.raises(ConfigError, match=r"data\.loader: dataset 'synthetic_text' has only the device loader"):
        build_data(text_cfg(loader="torchvision"), batch_size=4, seed=0)


def test_preflight_knows_the_text_without_loading_it():
    assert known_spec(text_cfg(val_size=100)) == ((8,), len(set(DATASETS["synthetic_text"]().text(text_cfg()))),
                                                  800 // 8)
    assert known_spec(DataConfig(name="shakespeare_char", context=64)) == ((64,), 65, 1_003_854 // 64)


def test_a_missing_or_altered_file_is_one_line(tmp_path):
    cfg = DataConfig(name="shakespeare_char", root=str(tmp_path))
    assert data_files_problem(cfg) == (f"Tiny Shakespeare not found: no {tmp_path}/tinyshakespeare/input.txt "
                                       f"(set data.root to the folder holding tinyshakespeare/; it cannot be downloaded)")
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("First Citizen:\n")
    assert data_files_problem(cfg) == (
        f"{tmp_path}/tinyshakespeare/input.txt: not the Tiny Shakespeare text (15 bytes, md5 "
        f"{hashlib.md5(b'First Citizen:' + bytes([10])).hexdigest()}; expected 1115394 bytes, "
        f"md5 6fb458f1232090904fb40fe944165e91)")
    with pytest.raises(ConfigError, match="not the Tiny Shakespeare text"):
        dataset("shakespeare_char").load(cfg)


@pytest.mark.slow  # the CLI as a subprocess, several times
def test_the_cli_stops_on_a_missing_file_before_making_a_folder(tmp_path):
    out = tmp_path / "runs"
    proc = run_cli(["--config", "configs/gpt_shakespeare.yaml", f"data.root={tmp_path}", "--out", str(out)])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: Tiny Shakespeare not found: no {tmp_path}/tinyshakespeare/input.txt (set data.root to the folder "
        f"holding tinyshakespeare/; it cannot be downloaded)"]
    assert not out.exists()


@pytest.mark.skipif(not REAL.is_file(), reason=f"the shared text is not at {REAL}")
def test_the_real_tiny_shakespeare():
    data = build_data(DataConfig(name="shakespeare_char", root=str(SHARED)), batch_size=12, seed=0)
    src = data.source
    assert (len(src.train), len(src.test), len(src.vocab)) == (1_003_854, 111_540, 65)
    assert src.vocab[:3] == "\n !" and src.vocab[-1] == "z"
    assert "".join(src.vocab[i] for i in src.train[:14].tolist()) == "First Citizen:"
    assert (data.spec.n_train, data.spec.n_test) == (1_003_854 // 64, 111_539 // 64) == (15_685, 1_742)
    assert data.steps_per_epoch == 15_685 // 12

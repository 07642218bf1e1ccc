"""Every registered method keeps the mask contract (tests/method_contract.py) in a real run, hits
its target to the exact weight count, and computes the same masks on 2 gloo ranks."""
import dataclasses
import json

import pytest
import torch
from accelerate import Accelerator

from helpers import ROOT, launch_2proc
from method_contract import ABLATION_SOURCE, Checked, ContractBroken, contract_config, run_checked
from suite.methods import METHODS, PruningMethod, method_class, reads, settings_section


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A runs folder holding the finished run the ablations ablate (method_contract.ABLATION_SOURCE)."""
    out = tmp_path_factory.mktemp("contract_sources")
    run_checked(ABLATION_SOURCE, out, Accelerator(cpu=True))
    return out


@pytest.mark.parametrize("name", list(METHODS))
def test_the_class_declares_what_the_config_needs(name, sources):
    cls = method_class(name)
    assert cls.name, "a method names itself"
    if cls.settings is not None:
        assert dataclasses.is_dataclass(cls.settings) and cls.settings.__dataclass_params__.frozen
        assert all(f.default is not dataclasses.MISSING for f in dataclasses.fields(cls.settings))
    for key in cls.defaults:  # a default the method does not read would be reset under it
        assert any(key.startswith(prefix) for prefix in reads(cls)), key
    section = settings_section(cls)
    cfg = contract_config(name, sources)
    assert section is None or dataclasses.is_dataclass(getattr(cfg, section))


@pytest.mark.parametrize("name", list(METHODS))
def test_every_hook_keeps_the_contract_and_the_run_ends_at_the_exact_count(name, tmp_path, sources):
    runner, r = run_checked(name, sources if method_class(name).ablates else tmp_path, Accelerator(cpu=True))
    n = r["prunable_total"]
    target = 0.8 if method_class(name).prunes else 0.0
    assert r["target_sparsity"] == target
    assert n - r["prunable_remaining"] == round(target * n)
    assert runner.method.returned >= (1 if target else 0)
    zeros = sum(int((w == 0).sum()) for w in runner.weights.values())
    assert zeros >= round(target * n)  # every dead weight is exactly 0 (live ones may also be)


@pytest.mark.ddp
@pytest.mark.slow
def test_every_method_computes_the_same_masks_on_two_ranks(tmp_path):
    out, report = tmp_path / "runs", tmp_path / "ranks"
    report.mkdir()
    proc = launch_2proc([str(ROOT / "tests" / "ddp_contract_script.py"), str(out), str(report)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((report / f"rank_{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert set(ranks[0]["held"]) == set(METHODS)
    assert ranks[0]["held"] == ranks[1]["held"]
    for name, held in ranks[0]["held"].items():
        target = 0.8 if method_class(name).prunes else 0.0
        assert held["zeros"] == round(target * _prunable_total()), name


def _prunable_total() -> int:
    return 192 * 32 + 32 * 16 + 16 * 10  # tiny_mlp on the synthetic 3x8x8 data


class _EditsItsInput(PruningMethod):
    name = "edits"

    def start_round(self, r, ctx, mask):
        mask[next(iter(mask))].view(-1)[0] = False
        return None


class _Unseeded(PruningMethod):
    name = "unseeded"

    def start_round(self, r, ctx, mask):
        return {n: torch.rand(m.shape) > 0.5 for n, m in mask.items()}


class _FloatMask(PruningMethod):
    name = "floats"

    def start_round(self, r, ctx, mask):
        return {n: m.float() for n, m in mask.items()}


@pytest.mark.parametrize("broken, message", [(_EditsItsInput, "edited the mask it was given"),
                                             (_Unseeded, "two calls on the same inputs disagree"),
                                             (_FloatMask, "is torch.float32")])
def test_the_checker_catches_a_broken_method(broken, message, tmp_path):
    from suite.trainer import Runner
    cfg = contract_config("dense")
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    runner.method = Checked(broken(cfg))
    runner.new_optimizer()
    with pytest.raises(ContractBroken, match=message):
        runner.method.start_round(0, runner.ctx, runner.masked.mask)

"""SNIP and GraSP under a real 2-process CPU DDP job equal one process on the union of the shards."""
import os
import shutil
import subprocess

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ddp_scores_script as S
from baselines.grasp import grasp_scores, official_halves
from suite.masks import count_alive, mask_at_sparsity
from suite.selection import select

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.ddp, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("accelerate") is None, reason="needs the accelerate launcher")]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_scores")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "tests" / "ddp_scores_script.py"),
           str(out)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [load_file(str(out / f"rank{r}.safetensors")) for r in range(2)]


@pytest.fixture(scope="module")
def single():
    """One process: every variant on the union of the two shards (rank 0's batches, then rank 1's)."""
    model, batches = S.fixed_problem()
    return S.score_all(model, batches[0::2] + batches[1::2])


def _group(flat, kind):
    return {k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith(kind + "/")}


def test_ranks_agree_bitwise(ranks):
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key


@pytest.mark.parametrize("kind", ["snip_eval", "snip_train", "grasp_train", "grasp_eval"])
def test_two_ranks_equal_one_process_on_the_union(ranks, single, kind):
    single = single[kind]
    ddp = _group(ranks[0], kind)
    assert ddp.keys() == single.keys() == {"conv.weight", "fc.weight"}
    for name in single:
        assert single[name].abs().max() > 0
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-5, atol=1e-6 * float(single[name].abs().max()))
    for sparsity in (0.5, 0.9):
        a, b = mask_at_sparsity(ddp, sparsity), mask_at_sparsity(single, sparsity)
        assert all(torch.equal(a[n], b[n]) for n in a), sparsity


def test_scores_use_every_rank(ranks):
    """The all-reduce is real: rank 0's shard alone gives other scores."""
    model, batches = S.fixed_problem()
    alone = S.snip_scores(model, batches[0::2])
    assert not torch.allclose(_group(ranks[0], "snip_eval")["conv.weight"], alone["conv.weight"], rtol=1e-3, atol=0)
    alone = S.grasp_scores(model, batches[0::2], temperature=S.TEMPERATURE)
    assert not torch.allclose(_group(ranks[0], "grasp_train")["conv.weight"], alone["conv.weight"], rtol=1e-3, atol=0)


def test_snip_method_mask_under_ddp_equals_one_process(ranks):
    # SNIP scores in BatchNorm eval mode: the rank shards of each global batch give exactly the
    # gradient of the whole batch, so the 2-process mask is the 1-process mask
    cfg, ctx = S.method_setup("snip", 0, 1)
    method, mask = S.Snip(cfg), S.full_mask(ctx.weights)
    single = select(method, ctx, mask, method.start_round(0, ctx, mask))
    ddp = _group(ranks[0], "method_snip")
    total = sum(m.numel() for m in single.values())
    assert total - count_alive(ddp) == round(0.8 * total)
    assert all(torch.equal(ddp[n], single[n]) for n in single)


def test_grasp_method_mask_under_ddp(ranks):
    # eval mode: grouping-free, so equal to the 1-process method
    cfg, ctx = S.method_setup("grasp", 0, 1, ["grasp.bn_mode=eval"])
    method, mask = S.Grasp(cfg), S.full_mask(ctx.weights)
    single = select(method, ctx, mask, method.start_round(0, ctx, mask))
    assert all(torch.equal(_group(ranks[0], "method_grasp_eval")[n], single[n]) for n in single)
    # train mode (the default): each rank forwards its shard of each official half; one process
    # forwarding those same four batches gives the same mask
    shards = []
    for rank in range(2):
        cfg, ctx = S.method_setup("grasp", rank, 2)
        total = cfg.grasp.samples_per_class * ctx.data.spec.num_classes
        shards.append(official_halves(ctx.data.class_balanced(cfg.grasp.samples_per_class), rank, 2, total))
    union = shards[0] + shards[1]
    assert [len(y) for _, y in union] == [13, 12, 12, 13]  # 50 examples, halves 25 + 25
    # the official halves of the class-ordered draw: classes 0-4, then classes 5-9
    assert set(torch.cat([union[0][1], union[2][1]]).tolist()) == {0, 1, 2, 3, 4}
    assert set(torch.cat([union[1][1], union[3][1]]).tolist()) == {5, 6, 7, 8, 9}
    scores = grasp_scores(ctx.model, union, temperature=cfg.grasp.temperature, weights=ctx.weights)
    expected = mask_at_sparsity(scores, 0.8)
    assert all(torch.equal(_group(ranks[0], "method_grasp_train")[n], expected[n]) for n in expected)

"""Training and inference FLOPs: the dense forward counted by FlopCounterMode, scaled by density."""
import json

import torch
from accelerate import Accelerator
from torch.utils.flop_counter import FlopCounterMode

from helpers import TINY
from suite import experiment as E
from suite import flops as FL
from suite import masks as M
from suite.methods import PruningMethod
from suite.trainer import Runner

# tiny_mlp on the synthetic 3x8x8 data: Linear 192->32->16->10, 2 * in * out FLOPs each per example
FC1, FC2, FC3 = 2 * 192 * 32, 2 * 32 * 16, 2 * 16 * 10
DENSE = FC1 + FC2 + FC3  # 13632
STEPS, BATCH = 8, 64     # 512 training examples in batches of 64
RUN = [*TINY, "train.epochs=2", "wandb.mode=disabled"]


def _run(tmp_path, method, *overrides):
    cfg = E.load_config(None, [*RUN, *overrides], method=method)
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    result = runner.run(progress=False)
    return runner, result


def test_a_dense_run_costs_steps_times_three_forward_passes(tmp_path):
    runner, r = _run(tmp_path, "dense")
    x, _ = next(iter(runner.data.train_batches(0)))
    with FlopCounterMode(display=False) as counter:
        runner.model(x)
    assert counter.get_total_flops() == BATCH * DENSE
    assert r["train_flops"] == 2 * STEPS * 3 * counter.get_total_flops()
    assert r["dense_cycle_flops"] == r["train_flops"] and r["train_cost_x_dense_cycle"] == 1.0
    assert (r["scoring_flops"], r["cycles"]) == (0.0, 1.0)
    assert r["inference_flops"] == DENSE and r["inference_flops_x_dense"] == 1.0
    saved = json.loads((runner.dir / "result.json").read_text())
    assert saved["train_flops"] == r["train_flops"]


def test_a_90_percent_uniform_run_pays_a_tenth_on_its_pruned_layers(tmp_path):
    _, r = _run(tmp_path, "random", "prune.target_sparsity=0.9", "prune.distribution=uniform",
                "prune.keep_last_dense=true")
    # fc1 (6144) and fc2 (512) at 0.9: ideal zeros 5529.6 and 460.8, 5990 in all: fc2 takes the
    # remainder -> 615 and 51 alive; fc3 stays dense
    per_example = FC3 + FC1 * 615 / 6144 + FC2 * 51 / 512
    assert per_example == FC3 + 1230 + 102
    assert r["train_flops"] == 2 * STEPS * BATCH * 3 * per_example
    assert r["inference_flops"] == per_example
    assert r["train_cost_x_dense_cycle"] == per_example / DENSE
    assert abs((1230 + 102) / (FC1 + FC2) - 0.1) < 1e-3  # a tenth, up to the rounding of the counts


def test_every_round_of_a_chain_counts(tmp_path):
    # rate 0.5 to 0.75: rounds at 0, 0.5, 0.75, each 2 epochs; uniform makes every layer exact
    runner, r = _run(tmp_path, "lth", "prune.target_sparsity=0.75", "lth.rate=0.5", "prune.distribution=uniform")
    assert r["rounds"] == 3
    assert r["train_flops"] == 2 * STEPS * BATCH * 3 * DENSE * (1 + 0.5 + 0.25)
    # three cycles: the chain costs 1.75 dense cycles, and its rounds 1, 1.5 and 1.75
    assert r["dense_cycle_flops"] == 2 * STEPS * BATCH * 3 * DENSE
    assert r["train_cost_x_dense_cycle"] == 1 + 0.5 + 0.25 and r["cycles"] == 3.0
    assert r["inference_flops"] == 0.25 * DENSE
    first = json.loads((runner.dir / "round_1" / "result.json").read_text())
    assert first["train_flops"] == 2 * STEPS * BATCH * 3 * DENSE * 1.5  # the chain up to that ticket
    assert (first["train_cost_x_dense_cycle"], first["cycles"]) == (1.5, 2.0)


class HalveAtStep3(PruningMethod):
    """Reads dense gradients every 3 steps; at the first hook it prunes every layer to half, at
    the next it updates the mask to the same mask; `skip_from` on, it makes no update (None)."""
    dense_grads = True
    skip_from = 99

    def step_interval(self):
        return 3

    def after_backward(self, round_index, t, ctx, mask, grads):
        if t * ctx.steps_per_epoch >= self.skip_from:
            return None  # no mask update: the dense gradient was not needed (RigL past its t_end)
        if M.sparsity_of(mask) > 0:
            return {n: m.clone() for n, m in mask.items()}
        return M.mask_at_sparsity(M.magnitude_scores(ctx.weights), 0.5, alive=mask, distribution="uniform")


def test_mask_changes_mid_epoch_and_dense_gradient_steps(tmp_path):
    cfg = E.load_config(None, RUN, method="dense")
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    runner.method = HalveAtStep3(cfg)
    runner.new_optimizer()
    runner.train_epoch(0, 0)
    # steps 1-3 dense, 4-8 at half density; the hook steps 3 (dense mask) and 6 (half) compute the
    # weight gradient densely: step 6 adds the dead half of one forward
    per_example = 3 * 3 * DENSE + 5 * 3 * DENSE / 2 + DENSE / 2
    assert runner.train_flops == BATCH * per_example


def test_a_hook_step_that_updates_nothing_pays_no_dense_gradient(tmp_path):
    cfg = E.load_config(None, RUN, method="dense")
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    runner.method = HalveAtStep3(cfg)
    runner.method.skip_from = 6  # step 6 returns None
    runner.new_optimizer()
    runner.train_epoch(0, 0)
    assert runner.train_flops == BATCH * (3 * 3 * DENSE + 5 * 3 * DENSE / 2)


def test_scoring_passes_are_counted_once_per_pass(tmp_path):
    # SNIP with 2 scoring batches of 64: a forward and a backward of the dense network per batch, i.e.
    # 3 dense forwards per example (FlopCounterMode counts the weight and input gradients of each Linear;
    # the first layer's input gradient is not needed, so autograd skips it)
    _, r = _run(tmp_path, "snip", "prune.target_sparsity=0.5", "snip.batches=2")
    assert r["scoring_flops"] == 2 * BATCH * (3 * DENSE - FC1)
    # the steps: an MLP's forward is 2 FLOPs per live weight
    assert r["train_flops"] - r["scoring_flops"] == 2 * STEPS * BATCH * 3 * 2 * r["prunable_remaining"]
    assert r["train_cost_x_dense_cycle"] == r["train_flops"] / (2 * STEPS * BATCH * 3 * DENSE)


class _Attention(torch.nn.Module):
    """One causal self-attention layer: qkv projection, scaled_dot_product_attention, output projection."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, width)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


def test_attention_products_are_counted_beside_the_matrices_and_do_not_shrink_with_the_mask():
    T, C, H = 5, 8, 2
    layer = _Attention(C, H)
    weights = {"qkv.weight": layer.qkv.weight, "proj.weight": layer.proj.weight}
    counted = FL.count_model_flops(layer, weights, (T, C), "cpu")
    qkv, proj = 2 * T * C * 3 * C, 2 * T * C * C      # 1920, 640
    attention = 2 * H * T * T * (C // H) * 2           # QK^T and AV: 800 (causal: counted whole, as torch does)
    assert counted.layers == {"qkv.weight": qkv, "proj.weight": proj}
    assert counted.total == qkv + proj + attention == 3360
    assert counted.forward({"qkv.weight": 0.5, "proj.weight": 0.5}) == attention + qkv / 2 + proj / 2 == 2080
    x = torch.zeros(1, T, C, requires_grad=True)
    with FL.counter() as c:  # the kernel's own backward, by torch's formula: five products of 2 h T T d
        layer(x).sum().backward()  # (QK^T again, dV, dP, dQ, dK); ModelFlops' training step keeps 2 x forward
    assert c.get_flop_counts()["Global"][torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward] \
        == 5 * attention // 2 == 2000

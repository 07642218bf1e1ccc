"""Training and inference FLOPs: the dense forward counted by FlopCounterMode, scaled by density."""
import json

from accelerate import Accelerator
from torch.utils.flop_counter import FlopCounterMode

from helpers import TINY
from suite import config as C
from suite import masks as M
from suite.methods import PruningMethod
from suite.trainer import Runner

# tiny_mlp on the synthetic 3x8x8 data: Linear 192->32->16->10, 2 * in * out FLOPs each per example
FC1, FC2, FC3 = 2 * 192 * 32, 2 * 32 * 16, 2 * 16 * 10
DENSE = FC1 + FC2 + FC3  # 13632
STEPS, BATCH = 8, 64     # 512 training examples in batches of 64
RUN = [*TINY, "train.epochs=2", "wandb.mode=disabled"]


def _run(tmp_path, method, *overrides):
    cfg = C.load_config(None, [*RUN, *overrides], method=method)
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
    assert r["train_flops_x_dense"] == 1.0
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
    assert r["train_flops_x_dense"] == per_example / DENSE
    assert abs((1230 + 102) / (FC1 + FC2) - 0.1) < 1e-3  # a tenth, up to the rounding of the counts


def test_every_round_of_a_chain_counts(tmp_path):
    # rate 0.5 to 0.75: rounds at 0, 0.5, 0.75, each 2 epochs; uniform makes every layer exact
    runner, r = _run(tmp_path, "lth", "prune.target_sparsity=0.75", "lth.rate=0.5", "prune.distribution=uniform")
    assert r["rounds"] == 3
    assert r["train_flops"] == 2 * STEPS * BATCH * 3 * DENSE * (1 + 0.5 + 0.25)
    assert r["train_flops_x_dense"] == (1 + 0.5 + 0.25) / 3
    assert r["inference_flops"] == 0.25 * DENSE
    first = json.loads((runner.dir / "round_1" / "result.json").read_text())
    assert first["train_flops"] == 2 * STEPS * BATCH * 3 * DENSE * 1.5  # the chain up to that ticket


class HalveAtStep3(PruningMethod):
    """Reads dense gradients every 3 steps; at the first hook it prunes every layer to half."""
    dense_grads = True

    def step_interval(self):
        return 3

    def after_backward(self, round_index, t, ctx, mask, grads):
        if M.sparsity_of(mask) > 0:
            return None
        return M.mask_at_sparsity(M.magnitude_scores(ctx.weights), 0.5, alive=mask, distribution="uniform")


def test_mask_changes_mid_epoch_and_dense_gradient_steps(tmp_path):
    cfg = C.load_config(None, RUN, method="dense")
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    runner.method = HalveAtStep3(cfg)
    runner._new_optimizer()
    metrics = runner.train_epoch(0, 0)
    # steps 1-3 dense, 4-8 at half density; the hook steps 3 (dense mask) and 6 (half) compute the
    # weight gradient densely: step 6 adds the dead half of one forward
    per_example = 3 * 3 * DENSE + 5 * 3 * DENSE / 2 + DENSE / 2
    assert metrics["train_flops"] == runner.train_flops == BATCH * per_example

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.lth import LotteryTicket, lth_levels, lth_sparsity
from suite.experiment import load_config
from suite.masks import count_alive, layer_sparsity, full_mask, n_zeros_for, prunable_weights
from suite.schedules import Budget
from suite.methods import METHODS, Context, build_method
from suite.selection import select


@pytest.mark.parametrize("rate, target, levels", [
    (0.2, 0.0, 0), (0.2, 0.2, 1), (0.2, 0.36, 2),
    (0.2, 0.488, 3),     # 1 - 0.8^3 = 0.488 exactly; in floats 0.4879999999999999 < 0.488 (4 levels)
    (0.2, 0.4879, 3), (0.2, 0.4881, 4),
    (0.2, 0.9, 11),      # 0.8^10 = 0.107 > 0.1 >= 0.8^11 = 0.086
    (0.2, 0.98, 18),     # 0.8^17 = 0.0225 > 0.02 >= 0.8^18 = 0.018
    (0.5, 0.75, 2), (0.5, 0.7500001, 3), (0.1, 0.271, 3), (0.1, 0.19, 2),
])
def test_levels_are_the_smallest_that_reach_the_target_exactly(rate, target, levels):
    assert lth_levels(rate, target) == levels


def test_sparsity_per_round_is_one_minus_keep_power_then_the_target():
    assert [lth_sparsity(0.2, 0.5, r) for r in range(6)] == [0.0, 0.2, 0.36, 0.488, 0.5, 0.5]
    assert [lth_sparsity(0.2, 0.488, r) for r in range(5)] == [0.0, 0.2, 0.36, 0.488, 0.488]
    assert lth_sparsity(0.2, 0.9, 10) == pytest.approx(1 - 0.8 ** 10, abs=1e-15)
    assert lth_sparsity(0.2, 0.9, 11) == 0.9


def _method(target, rate=0.2, rewind=0, epochs=4):
    cfg = load_config(None, [f"prune.target_sparsity={target}", f"lth.rate={rate}", f"lth.rewind_epoch={rewind}",
                             f"train.epochs={epochs}"], method="lth")
    return cfg, build_method(cfg)


def test_method_reads_its_config():
    cfg, method = _method(0.5, rewind=2)
    assert isinstance(method, LotteryTicket)
    assert method.rounds() == 5  # dense round + 4 levels (0.2, 0.36, 0.488, 0.5)
    assert method.rewind_step() == 2  # epochs of one step each: the budget before the data is known
    assert build_method(cfg, Budget(40, 10)).rewind_step() == 20  # epoch 2 of 10 steps each
    assert [method.target_at(r, 1.5) for r in range(5)] == [0.0, 0.2, 0.36, 0.488, 0.5]
    assert _method(0.0)[1].rounds() == 1


def test_end_round_prunes_global_magnitude_over_live_weights_to_exact_counts():
    cfg, method = _method(0.5)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 7))
    weights = prunable_weights(model)
    total = 20 * 30 + 30 * 7  # 810
    ctx = Context(cfg=cfg, model=model, weights=weights, data=None, loss_fn=F.cross_entropy,
                  device=torch.device("cpu"), epochs=4, steps_per_epoch=1)
    mask = full_mask(weights)
    counts = []
    for r in range(method.rounds()):
        # "training": new weights each round, pruned ones held at zero as the runner does
        with torch.no_grad():
            for n, w in weights.items():
                w.copy_(torch.randn_like(w) * mask[n] * (3.0 if n == "2.weight" else 1.0))
        new = select(method, ctx, mask, method.end_round(r, ctx, mask))
        if r == method.rounds() - 1:
            assert new is None  # the last round trained the ticket; nothing left to prune
            break
        zeros = total - count_alive(new)
        assert zeros == n_zeros_for(method.target_at(r + 1, 0.0), total)
        assert all(not (new[n] & ~mask[n]).any() for n in mask)  # no regrowth
        # removed weights are the smallest live magnitudes: every survivor is at least as large
        live = torch.cat([weights[n].detach().abs()[mask[n]] for n in mask])
        kept = torch.cat([weights[n].detach().abs()[new[n]] for n in mask])
        assert torch.equal(torch.sort(kept).values, torch.sort(live).values[len(live) - len(kept):])
        # one global threshold, not one per layer: the 3x larger layer loses far fewer weights
        assert layer_sparsity(new)["0.weight"] > 2 * layer_sparsity(new)["2.weight"]
        mask = new
        counts.append(zeros)
    # round(0.2 N), round(0.36 N), round(0.488 N), round(0.5 N): the last is the target, exactly
    assert counts == [162, 292, 395, 405]


def test_end_round_keeps_dense_layers_out_of_the_count():
    cfg = load_config(None, ["prune.target_sparsity=0.36", "prune.keep_last_dense=true"], method="lth")
    method = build_method(cfg)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))
    weights = prunable_weights(model, keep_last_dense=True)
    ctx = Context(cfg=cfg, model=model, weights=weights, data=None, loss_fn=F.cross_entropy,
                  device=torch.device("cpu"), epochs=30, steps_per_epoch=1)
    dense = full_mask(weights)
    mask = select(method, ctx, dense, method.end_round(0, ctx, dense))
    assert list(mask) == ["0.weight"]
    assert 100 - count_alive(mask) == 20


# --- end to end through the real runner ----------------------------------------------------------

class RewindProbe(LotteryTicket):
    """LTH as it is, recording what the runner hands it (test only: the class list is the record)."""
    seen: list = []

    def start_round(self, round_index, ctx, mask):
        RewindProbe.seen.append(("start", round_index, _state(ctx.model), _clone(mask)))
        return super().start_round(round_index, ctx, mask)

    def end_epoch(self, round_index, epoch, ctx, mask):
        RewindProbe.seen.append(("epoch", round_index, epoch, _state(ctx.model)))
        return super().end_epoch(round_index, epoch, ctx, mask)

    def end_round(self, round_index, ctx, mask):
        new = select(self, ctx, mask, super().end_round(round_index, ctx, mask))
        RewindProbe.seen.append(("end", round_index, None if new is None else _clone(new)))
        return new


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _clone(mask):
    return {n: m.clone() for n, m in mask.items()}


@pytest.fixture
def accelerator(monkeypatch):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setitem(METHODS, "lth", f"{__name__}:RewindProbe")
    RewindProbe.seen = []
    yield Accelerator(cpu=True)
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("rewind", [0, 1])
def test_runner_rewinds_survivors_exactly_and_records_each_round(accelerator, tmp_path, rewind):
    from safetensors.torch import load_file

    from suite.trainer import run_experiment

    epochs = 3
    cfg = load_config(None, ["data.name=synthetic", "model.name=tiny_cnn", "train.batch_size=64",
                             f"train.epochs={epochs}", "prune.target_sparsity=0.36", f"lth.rewind_epoch={rewind}"],
                      method="lth")
    outcome = run_experiment(cfg, tmp_path, accelerator, progress=False)
    seen = RewindProbe.seen
    starts = {e[1]: e for e in seen if e[0] == "start"}
    ends = {e[1]: e[2] for e in seen if e[0] == "end"}
    assert sorted(starts) == [0, 1, 2] and sorted(ends) == [0, 1]  # 0.36 = 1 - 0.8^2: two levels, three rounds
    init = starts[0][2]
    rewind_state = init if rewind == 0 else next(e[3] for e in seen if e[:3] == ("epoch", 0, rewind))
    if rewind:
        assert not torch.equal(rewind_state["conv1.weight"], init["conv1.weight"])  # training happened
    for r in (1, 2):
        state, mask = starts[r][2], starts[r][3]
        assert all(torch.equal(mask[n], ends[r - 1][n]) for n in mask)  # the mask end_round returned
        for key, value in state.items():
            if key in mask:  # surviving weights are the rewind point's, bit for bit
                assert torch.equal(value[mask[key]], rewind_state[key][mask[key]]), (r, key)
            else:  # biases, BatchNorm affine parameters, running statistics and counters
                assert torch.equal(value, rewind_state[key]), (r, key)
    # on disk: one folder per round, exact zero counts, epochs k+1..E retrained after round 0
    run_dir = outcome.run_dir
    total = sum(m.numel() for m in starts[0][3].values())
    for r, s in enumerate((0.0, 0.2, 0.36)):
        result = json.loads((run_dir / f"round_{r}" / "result.json").read_text())
        assert result["target_sparsity"] == s
        assert result["prunable_total"] - result["prunable_remaining"] == round(s * total)
        disk = load_file(str(run_dir / f"round_{r}" / "mask.safetensors"))
        assert total - sum(int(m.sum()) for m in disk.values()) == round(s * total)
        epochs_seen = [json.loads(line)["epoch"] for line in (run_dir / f"round_{r}" / "metrics.jsonl").open()]
        assert epochs_seen == list(range(1 if r == 0 else rewind + 1, epochs + 1))
    final = json.loads((run_dir / "result.json").read_text())
    assert final["rounds"] == 3 and final["method_kind"] == "prunes" and final["total_epochs_trained"] == epochs + 2 * (epochs - rewind)
    assert final["achieved_sparsity"] == round(0.36 * total) / total

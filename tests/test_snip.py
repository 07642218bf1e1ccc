import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.snip import snip_scores
from suite.masks import count_alive, mask_at_sparsity
from suite.selection import select

from helpers import BNNet, assert_untouched, bn_batches, snapshot


def _linear_problem():
    """A 1-layer linear classifier (no bias) in float64, with two batches of different sizes."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(3, 5, generator=g, dtype=torch.float64))
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0, 2, 2])
    return model, x, y


def _hand_gradient(w, x, y):
    """dL/dW of the mean cross-entropy of logits x W^T, written out: (softmax - onehot)^T x / n."""
    z = x @ w.T
    p = torch.exp(z - z.max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    return (p - F.one_hot(y, 3).double()).T @ x / len(y)


def test_snip_is_abs_w_times_hand_written_gradient():
    model, x, y = _linear_problem()
    scores = snip_scores(model, [(x, y)])
    expected = (model[0].weight.detach() * _hand_gradient(model[0].weight.detach(), x, y)).abs()
    assert list(scores) == ["0.weight"]
    torch.testing.assert_close(scores["0.weight"], expected, rtol=1e-12, atol=1e-15)


def test_snip_gradient_is_summed_over_batches_before_the_absolute_value():
    model, x, y = _linear_problem()
    w = model[0].weight.detach()
    # batches of 3 and 4 examples: the score is that of the mean loss over all 7
    scores = snip_scores(model, [(x[:3], y[:3]), (x[3:], y[3:])])
    union = (w * _hand_gradient(w, x, y)).abs()
    torch.testing.assert_close(scores["0.weight"], union, rtol=1e-12, atol=1e-15)
    # summing absolute values per batch instead would give another score (the test can tell)
    per_batch = (3 * (w * _hand_gradient(w, x[:3], y[:3])).abs() + 4 * (w * _hand_gradient(w, x[3:], y[3:])).abs()) / 7
    assert not torch.allclose(per_batch, union)


def test_snip_mask_keeps_the_highest_sensitivities_exactly():
    model, x, y = _linear_problem()
    scores = snip_scores(model, [(x, y)])
    mask = mask_at_sparsity(scores, 0.6)  # 15 weights: round(9.0) = 9 removed, 6 kept
    assert count_alive(mask) == 6
    order = torch.argsort(scores["0.weight"].reshape(-1), descending=True)
    expected = torch.zeros(15, dtype=torch.bool)
    expected[order[:6]] = True
    assert torch.equal(mask["0.weight"].reshape(-1), expected)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_snip_leaves_the_model_untouched(bn_mode):
    torch.manual_seed(0)
    model = BNNet()
    model.train()
    model.drop.eval()  # a mixed pattern of flags must come back as it was
    model.conv.weight.grad = torch.full_like(model.conv.weight, 0.25)  # a stale .grad stays as is
    model.fc.bias.requires_grad_(False)
    model.fc.weight.requires_grad_(False)  # a frozen prunable weight is scored and stays frozen
    model.bn.running_mean.add_(0.5)  # non-default statistics, so a reset would show
    before = snapshot(model)
    scores = snip_scores(model, bn_batches(), bn_mode=bn_mode)
    assert set(scores) == {"conv.weight", "fc.weight"}
    assert all(bool((s > 0).any()) for s in scores.values())
    assert_untouched(model, before)


def test_snip_bn_mode_is_the_batchnorm_mode_and_dropout_is_off():
    torch.manual_seed(0)
    model = BNNet()
    batches = bn_batches()
    for mode in ("eval", "train"):
        # reference: the same quantity by plain autograd, the model put in that mode by hand
        ref = BNNet()
        ref.load_state_dict(model.state_dict())
        ref.eval()
        ref.bn.train(mode == "train")
        params = [ref.conv.weight, ref.fc.weight]
        total = [torch.zeros_like(p) for p in params]
        for x, y in batches:
            for t, gr in zip(total, torch.autograd.grad(F.cross_entropy(ref(x), y) * len(y), params)):
                t += gr
        expected = {"conv.weight": (ref.conv.weight * total[0] / 12).abs().detach(),
                    "fc.weight": (ref.fc.weight * total[1] / 12).abs().detach()}
        scores = snip_scores(model, batches, bn_mode=mode)
        for k in expected:
            torch.testing.assert_close(scores[k], expected[k], rtol=1e-5, atol=1e-9)
    # the option matters: batch statistics give other scores than the running ones
    assert not torch.allclose(snip_scores(model, batches, bn_mode="eval")["conv.weight"],
                              snip_scores(model, batches, bn_mode="train")["conv.weight"])


def test_snip_eval_mode_does_not_depend_on_the_batch_split():
    torch.manual_seed(0)
    model = BNNet().double()  # float64: the two summation orders agree far below the tolerance
    (x1, y1), (x2, y2) = bn_batches()
    x, y = torch.cat([x1, x2]).double(), torch.cat([y1, y2])
    one = snip_scores(model, [(x, y)])
    split = snip_scores(model, [(x[:5], y[:5]), (x[5:], y[5:])])
    for k in one:
        torch.testing.assert_close(one[k], split[k], rtol=1e-10, atol=1e-12)


def test_snip_weight_selection_and_bad_input():
    torch.manual_seed(0)
    model = BNNet()
    batches = bn_batches()
    only_fc = snip_scores(model, batches, weights={"fc.weight": model.fc.weight})
    assert list(only_fc) == ["fc.weight"]
    torch.testing.assert_close(only_fc["fc.weight"], snip_scores(model, batches)["fc.weight"])
    with pytest.raises(ValueError, match="bn_mode"):
        snip_scores(model, batches, bn_mode="training")
    with pytest.raises(ValueError, match="no scoring examples"):
        snip_scores(model, [])
    with pytest.raises(ValueError, match="no weights to score"):
        snip_scores(nn.Sequential(nn.ReLU()), batches)


def test_snip_method_scores_the_scoring_batches_once():
    import ddp_scores_script as S
    from baselines.snip import Snip
    from suite.masks import full_mask

    cfg, ctx = S.method_setup("snip", 0, 1)  # synthetic data, tiny_cnn, 2 batches of 64, target 0.8
    before = snapshot(ctx.model)
    method, dense = Snip(cfg), full_mask(ctx.weights)
    mask = select(method, ctx, dense, method.start_round(0, ctx, dense))
    assert_untouched(ctx.model, before)
    expected = mask_at_sparsity(snip_scores(ctx.model, ctx.data.scoring_batches(2), weights=ctx.weights), 0.8)
    assert all(torch.equal(mask[n], expected[n]) for n in expected)
    total = sum(m.numel() for m in mask.values())
    assert total - count_alive(mask) == round(0.8 * total)
    one_batch = mask_at_sparsity(snip_scores(ctx.model, ctx.data.scoring_batches(1), weights=ctx.weights), 0.8)
    assert any(not torch.equal(mask[n], one_batch[n]) for n in mask)  # snip.batches is honoured
    assert select(method, ctx, mask, method.start_round(0, ctx, mask)) is None  # already pruned: never scores trained weights

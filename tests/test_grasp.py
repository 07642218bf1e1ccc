import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from baselines.grasp import grasp_scores
from suite.masks import count_alive, mask_at_sparsity, prunable_weights
from suite.selection import select

from helpers import BNNet, assert_untouched, bn_batches, snapshot


def _mlp_problem():
    """A 4-3-3 tanh MLP in float64 (21 prunable weights: the Hessian is 21 x 21) and 3 batches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g))
               for n in (5, 2, 4)]
    return model, batches


def _explicit(model, batches, temperature):
    """w * (H @ g) from the full Hessian of the mean loss over every example, by
    torch.autograd.functional.hessian over the flattened prunable weights."""
    weights = prunable_weights(model)
    names = list(weights)
    shapes = [weights[n].shape for n in names]
    flat0 = torch.cat([weights[n].detach().reshape(-1) for n in names])
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    def loss(flat):
        params, start = dict(model.named_parameters()), 0
        for n, shape in zip(names, shapes):
            params[n] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, params, (x,)) / temperature, y)

    flat = flat0.clone().requires_grad_(True)
    g = torch.autograd.grad(loss(flat), flat)[0]
    hessian = torch.autograd.functional.hessian(loss, flat0)
    assert hessian.shape == (21, 21)
    return flat0 * (hessian @ g), flat0, names, shapes


def _unflatten(flat, names, shapes):
    out, start = {}, 0
    for n, shape in zip(names, shapes):
        out[n] = flat[start:start + shape.numel()].view(shape)
        start += shape.numel()
    return out


@pytest.mark.parametrize("temperature", [200.0, 1.0])
def test_grasp_equals_w_times_explicit_hessian_times_gradient(temperature):
    model, batches = _mlp_problem()
    expected, _, names, shapes = _explicit(model, batches, temperature)
    scores = grasp_scores(model, batches, temperature=temperature)
    assert list(scores) == ["0.weight", "2.weight"]
    got = torch.cat([scores[n].reshape(-1) for n in names])
    assert got.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-14 * float(expected.abs().max()))


def test_grasp_default_temperature_is_200_and_matters():
    model, batches = _mlp_problem()
    default = grasp_scores(model, batches)
    torch.testing.assert_close(default["0.weight"], grasp_scores(model, batches, temperature=200.0)["0.weight"],
                               rtol=0, atol=0)
    one = grasp_scores(model, batches, temperature=1.0)
    # H g shrinks like T^-3: the ranking may survive, the numbers must not
    assert not torch.allclose(default["0.weight"], one["0.weight"])


def test_grasp_removes_the_largest_s_not_the_smallest():
    """The paper's S = -w * Hg: the largest S are removed. The opposite sign keeps another set."""
    model, batches = _mlp_problem()
    explicit, _, names, shapes = _explicit(model, batches, 1.0)
    s = -explicit  # the paper's score
    n_remove = round(0.6 * 21)  # 13
    removed = torch.zeros(21, dtype=torch.bool)
    removed[torch.argsort(s, descending=True)[:n_remove]] = True
    mask = mask_at_sparsity(grasp_scores(model, batches, temperature=1.0), 0.6)
    got = torch.cat([mask[n].reshape(-1) for n in names])
    assert torch.equal(got, ~removed)
    assert count_alive(mask) == 21 - n_remove
    flipped = mask_at_sparsity(_unflatten(s, names, shapes), 0.6)  # keeping the largest S instead
    assert not torch.equal(torch.cat([flipped[n].reshape(-1) for n in names]), got)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_grasp_leaves_the_model_untouched(bn_mode):
    torch.manual_seed(0)
    model = BNNet()
    model.train()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    model.bn.running_var.mul_(2.0)
    before = snapshot(model)
    scores = grasp_scores(model, bn_batches(), temperature=1.0, bn_mode=bn_mode)
    assert set(scores) == {"conv.weight", "fc.weight"}
    assert all(bool((s != 0).any()) for s in scores.values())
    assert_untouched(model, before)


def test_grasp_bn_mode_default_is_train_and_matters():
    torch.manual_seed(0)
    model = BNNet()
    batches = bn_batches()
    default = grasp_scores(model, batches, temperature=1.0)
    train = grasp_scores(model, batches, temperature=1.0, bn_mode="train")
    evals = grasp_scores(model, batches, temperature=1.0, bn_mode="eval")
    assert torch.equal(default["conv.weight"], train["conv.weight"])
    assert not torch.allclose(train["conv.weight"], evals["conv.weight"])


def test_grasp_with_batchnorm_in_train_mode_matches_a_double_autograd_reference():
    """Each batch normalised by its own statistics: g = sum_b n_b dL_b / N, then
    Hg = sum_b n_b d(g . dL_b)/dw / N, spelled out with autograd on a copy in train mode."""
    torch.manual_seed(0)
    model = BNNet()
    batches = bn_batches()
    ref = BNNet()
    ref.load_state_dict(model.state_dict())
    ref.eval()
    ref.bn.train()
    params = [ref.conv.weight, ref.fc.weight]
    n_total = sum(len(y) for _, y in batches)
    g = [sum(len(y) * torch.autograd.grad(F.cross_entropy(ref(x), y), p)[0] for x, y in batches) / n_total
         for p in params]
    hg = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        first = torch.autograd.grad(F.cross_entropy(ref(x), y), params, create_graph=True)
        z = sum((gi * fi).sum() for gi, fi in zip(g, first))
        for h, second in zip(hg, torch.autograd.grad(z, params)):
            h += len(y) * second / n_total
    scores = grasp_scores(model, batches, temperature=1.0)
    torch.testing.assert_close(scores["conv.weight"], (ref.conv.weight * hg[0]).detach(), rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(scores["fc.weight"], (ref.fc.weight * hg[1]).detach(), rtol=1e-4, atol=1e-10)


def test_grasp_bad_input():
    model, batches = _mlp_problem()
    with pytest.raises(ValueError, match="temperature"):
        grasp_scores(model, batches, temperature=0.0)
    with pytest.raises(ValueError, match="bn_mode"):
        grasp_scores(model, batches, bn_mode="inference")
    with pytest.raises(ValueError, match="no scoring examples"):
        grasp_scores(model, [])


def _grasp_context(*overrides):
    import ddp_scores_script as S
    return S.method_setup("grasp", 0, 1, list(overrides))


def test_grasp_method_forwards_the_official_two_halves_and_prunes_exactly():
    from baselines.grasp import Grasp, official_halves
    from suite.masks import full_mask

    cfg, ctx = _grasp_context()  # synthetic data (10 classes), tiny_cnn, 5 per class, target 0.8
    draw = ctx.data.class_balanced(5)
    halves = official_halves(draw, 0, 1, 50)
    assert [y.tolist() for _, y in halves] == [sorted([0, 1, 2, 3, 4] * 5), sorted([5, 6, 7, 8, 9] * 5)]
    method, dense = Grasp(cfg), full_mask(ctx.weights)
    mask = select(method, ctx, dense, method.start_round(0, ctx, dense))
    expected = mask_at_sparsity(grasp_scores(ctx.model, halves, weights=ctx.weights), 0.8)
    assert all(torch.equal(mask[n], expected[n]) for n in expected)
    total = sum(m.numel() for m in mask.values())
    assert total - count_alive(mask) == round(0.8 * total)
    # BatchNorm in train mode: one pass of all 50 normalises differently, so the split is real
    one_pass = grasp_scores(ctx.model, draw, weights=ctx.weights)
    assert not torch.allclose(one_pass["conv1.weight"], grasp_scores(ctx.model, halves, weights=ctx.weights)["conv1.weight"],
                              rtol=1e-3, atol=0)
    assert select(method, ctx, mask, method.start_round(0, ctx, mask)) is None  # already pruned: never scores trained weights


def test_official_halves_rejects_a_share_it_does_not_understand():
    from baselines.grasp import official_halves
    x, y = torch.zeros(7, 2), torch.zeros(7, dtype=torch.long)
    with pytest.raises(RuntimeError, match="rank 0 of 2 holds 7 of the 10"):
        official_halves([(x, y)], 0, 2, 10)
    halves = official_halves([(x[:5], y[:5])], 1, 2, 10)  # positions 1, 3 | 5, 7, 9
    assert [len(b[1]) for b in halves] == [2, 3]

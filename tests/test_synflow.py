import pytest
import torch
from torch import nn

from baselines.synflow import synflow_densities, synflow_mask, synflow_scores, synflow_steps
from suite.masks import count_alive, full_mask

from helpers import BNNet


def _linear_net():
    """Linear(4, 3) + bias, ReLU, Linear(3, 2) without bias, weights of both signs, in float32."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(3, 4, generator=g))
        net[0].bias.copy_(torch.randn(3, generator=g))
        net[2].weight.copy_(torch.randn(2, 3, generator=g))
    return net


def _closed_form(w1, b1, w2, m1=None, m2=None):
    """By hand: with |W| and a ones input every unit is positive, ReLU is the identity, and
    R = 1^T |W2| (|W1| 1 + |b1|); so dR/d|W1|_ij = sum_k |W2|_ki and dR/d|W2|_ki = (|W1| 1 + |b1|)_i."""
    a1, a2 = w1.abs().double(), w2.abs().double()
    if m1 is not None:
        a1, a2 = a1 * m1, a2 * m2
    col = a2.sum(0)                         # sum_k |W2|_ki, one per hidden unit i
    hidden = a1.sum(1) + b1.abs().double()  # the hidden unit's flow
    return a1 * col[:, None], a2 * hidden[None, :]


def test_synflow_scores_equal_the_closed_form_of_a_linear_network():
    net = _linear_net()
    scores = synflow_scores(net, (4,))
    s1, s2 = _closed_form(net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach())
    assert list(scores) == ["0.weight", "2.weight"]
    assert scores["0.weight"].dtype == torch.float64  # scored in float64 whatever the model's dtype
    torch.testing.assert_close(scores["0.weight"], s1, rtol=1e-12, atol=0)
    torch.testing.assert_close(scores["2.weight"], s2, rtol=1e-12, atol=0)
    # signs matter nowhere: flipping the first layer changes no score, although with signed weights
    # the ReLU would cut other units
    assert float(net[0].weight.detach().min()) < 0 < float(net[0].weight.detach().max())
    with torch.no_grad():
        net[0].weight.mul_(-1.0)
    assert all(torch.equal(synflow_scores(net, (4,))[k], scores[k]) for k in scores)


def test_synflow_scores_apply_the_mask_before_the_flow():
    net = _linear_net()
    mask = full_mask({"0.weight": net[0].weight, "2.weight": net[2].weight})
    mask["0.weight"][1, :] = False   # hidden unit 1 gets no input from x: only its bias
    mask["2.weight"][0, 2] = False
    scores = synflow_scores(net, (4,), mask=mask)
    m1, m2 = mask["0.weight"].double(), mask["2.weight"].double()
    s1, s2 = _closed_form(net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach(), m1, m2)
    torch.testing.assert_close(scores["0.weight"], s1, rtol=1e-12, atol=0)
    torch.testing.assert_close(scores["2.weight"], s2, rtol=1e-12, atol=0)
    assert int((scores["0.weight"][1] != 0).sum()) == 0 and float(scores["2.weight"][0, 2]) == 0.0
    # unmasked, those weights carry flow: the mask really changed the scores
    assert not torch.equal(synflow_scores(net, (4,))["2.weight"], scores["2.weight"])


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: m.training for n, m in model.named_modules()},
            {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
            {n: p.requires_grad for n, p in model.named_parameters()},
            {k: v.dtype for k, v in model.state_dict().items()})


def test_synflow_leaves_the_model_bitwise_unchanged():
    torch.manual_seed(0)
    model = BNNet()
    model.train()
    model.drop.eval()                                   # a mixed pattern of flags
    model.conv.weight.grad = torch.full_like(model.conv.weight, 0.25)  # a stale .grad
    model.fc.bias.requires_grad_(False)
    with torch.no_grad():
        model.bn.running_mean.add_(-0.5)                # negative buffers: an in-place abs would show
        model.bn.weight.mul_(-1.0)
    before = _snapshot(model)
    assert float(model.conv.weight.detach().min()) < 0
    scores = synflow_scores(model, (2, 4, 4))
    after = _snapshot(model)
    assert before[0].keys() == after[0].keys()
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    assert before[1] == after[1] and before[3] == after[3] and before[4] == after[4]  # flags, requires_grad, dtypes
    for n in before[2]:
        assert (before[2][n] is None) == (after[2][n] is None), n
        if before[2][n] is not None:
            assert torch.equal(before[2][n], after[2][n]), n
    assert model.fc.weight.grad is None                # no gradient left behind on the model
    assert set(scores) == {"conv.weight", "fc.weight"} and all(bool((s > 0).all()) for s in scores.values())


def test_synflow_uses_eval_mode_batchnorm_with_absolute_running_statistics():
    torch.manual_seed(0)
    model = BNNet()
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        model.bn.running_var.copy_(torch.tensor([1.0, 4.0, 0.25, 2.0]))
    # reference: a float64 copy with |every parameter and buffer|, eval mode, plain autograd
    ref = BNNet()
    ref.load_state_dict(model.state_dict())
    ref = ref.double().eval()
    with torch.no_grad():
        for t in [*ref.parameters(), *ref.buffers()]:
            if t.is_floating_point():
                t.abs_()
    ref(torch.ones(1, 2, 4, 4, dtype=torch.float64)).sum().backward()
    scores = synflow_scores(model, (2, 4, 4))
    for name, p in (("conv.weight", ref.conv.weight), ("fc.weight", ref.fc.weight)):
        torch.testing.assert_close(scores[name], (p * p.grad).abs().detach(), rtol=1e-12, atol=0)


def test_synflow_schedule_is_exponential_and_ends_at_the_density():
    assert synflow_densities(0.01, 2) == [0.1, 0.01]
    d = synflow_densities(0.1, 100)
    assert len(d) == 100 and d[-1] == 0.1
    assert d[0] == pytest.approx(0.1 ** 0.01) and all(a > b for a, b in zip(d, d[1:]))
    with pytest.raises(ValueError, match="iterations"):
        synflow_densities(0.1, 0)


def _mlp():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 5))


def test_synflow_100_iterations_reach_the_exact_count_and_never_regrow():
    model = _mlp()
    n = 20 * 30 + 30 * 30 + 30 * 5  # 1650 prunable weights
    target, iterations = 0.98, 100
    previous, steps = None, 0
    for k, mask in enumerate(synflow_steps(model, (20,), target, iterations), start=1):
        expected_zeros = round(target * n) if k == iterations else round((1 - 0.02 ** (k / iterations)) * n)
        assert n - count_alive(mask) == expected_zeros, k
        if previous is not None:
            assert all(bool((mask[name] & ~previous[name]).sum() == 0) for name in mask), k  # no weight revived
        previous, steps = mask, steps + 1
    assert steps == 100 and n - count_alive(previous) == round(0.98 * 1650) == 1617
    # iterating matters: one step keeps another set of weights than a hundred
    once = synflow_mask(model, (20,), target, 1)
    assert n - count_alive(once) == 1617
    assert any(not torch.equal(once[k], previous[k]) for k in once)
    # a given mask is only ever shrunk
    start = {k: torch.rand(m.shape, generator=torch.Generator().manual_seed(1)) < 0.5 for k, m in previous.items()}
    shrunk = synflow_mask(model, (20,), 0.9, 10, mask=start)
    assert n - count_alive(shrunk) == round(0.9 * n)
    assert all(bool((shrunk[k] & ~start[k]).sum() == 0) for k in start)


def test_synflow_under_a_layer_distribution_prunes_each_layer_to_its_count():
    from suite.masks import layer_zero_counts, mask_at_sparsity
    model = _mlp()
    shapes = {"0.weight": (30, 20), "2.weight": (30, 30), "4.weight": (5, 30)}
    for distribution in ("uniform", "erk"):
        build = lambda scores, s, alive: mask_at_sparsity(scores, s, alive, distribution=distribution)
        mask = synflow_mask(model, (20,), 0.9, 10, build=build)
        expected = layer_zero_counts({n: torch.Size(s) for n, s in shapes.items()}, 0.9, distribution)
        assert {n: int((~m).sum()) for n, m in mask.items()} == expected, distribution
        assert sum(expected.values()) == round(0.9 * 1650)

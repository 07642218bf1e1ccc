import pytest
import torch
from torch import nn

from suite import masks as M


def test_keep_top_global_threshold_and_positional_ties():
    scores = {"a": torch.tensor([3.0, 1.0, 2.0, 2.0]), "b": torch.tensor([[2.0, 0.5], [2.0, 5.0]])}
    mask = M.keep_top(scores, 4)
    # 5 and 3 are above the threshold 2; four 2s tie for two places: the earliest two (a[2], a[3]) stay
    assert mask["a"].tolist() == [True, False, True, True]
    assert mask["b"].tolist() == [[False, False], [False, True]]
    assert M.count_alive(mask) == 4


def test_keep_top_extremes_and_nan():
    scores = {"w": torch.tensor([float("nan"), 1.0, -2.0])}
    assert M.keep_top(scores, 0)["w"].tolist() == [False, False, False]
    assert M.keep_top(scores, 3)["w"].tolist() == [True, True, True]
    assert M.keep_top(scores, 1)["w"].tolist() == [False, True, False]  # NaN ranks last
    assert M.keep_top(scores, 2)["w"].tolist() == [False, True, True]
    assert torch.isnan(scores["w"][0])  # the caller's scores are untouched


def test_mask_at_sparsity_exact_count_is_round_s_n():
    torch.manual_seed(0)
    scores = {"x": torch.randn(37, 11).abs(), "y": torch.randn(101).abs()}
    total = 37 * 11 + 101  # 508
    for s in (0.0, 0.1, 0.5, 0.729, 0.9, 0.98, 0.999):
        mask = M.mask_at_sparsity(scores, s)
        assert total - M.count_alive(mask) == round(s * total)


def test_mask_never_regrows_and_ignores_dead_weights():
    w = {"w": torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])}
    alive = {"w": torch.tensor([False, True, True, True, True, True])}  # the largest weight is dead
    mask = M.mask_at_sparsity(M.magnitude_scores(w), 0.5, alive=alive)
    assert mask["w"].tolist() == [False, True, True, True, False, False]
    assert not (mask["w"] & ~alive["w"]).any()


def test_keep_top_large_input_exact():
    # torch.quantile refuses inputs over 2**24 elements; keep_top must not
    n = 2**24 + 1000
    scores = {"w": torch.arange(n, dtype=torch.float32)}
    mask = M.keep_top(scores, 10)
    assert int(mask["w"].sum()) == 10
    assert mask["w"][-10:].all()


def test_prunable_weights_and_dense_first_last():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 5), nn.Linear(5, 2))
    assert list(M.prunable_weights(model)) == ["0.weight", "3.weight", "4.weight"]
    assert list(M.prunable_weights(model, keep_first_dense=True)) == ["3.weight", "4.weight"]
    assert list(M.prunable_weights(model, keep_last_dense=True)) == ["0.weight", "3.weight"]
    assert list(M.prunable_weights(model, True, True)) == ["3.weight"]


def test_masked_weights_enforces_on_weights_grads_and_momentum():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, bias=False)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    lin(torch.randn(2, 4)).sum().backward()
    opt.step()  # momentum buffer is now non-zero everywhere
    masked = M.MaskedWeights({"weight": lin.weight})
    mask = {"weight": torch.tensor([[True, False, True, False]] * 3)}
    masked.install(mask, opt)
    assert (lin.weight[:, [1, 3]] == 0).all()
    assert (opt.state[lin.weight]["momentum_buffer"][:, [1, 3]] == 0).all()
    for _ in range(3):
        masked.apply_to_weights()
        lin(torch.randn(2, 4)).pow(2).sum().backward()
        masked.apply_to_grads()
        assert (lin.weight.grad[:, [1, 3]] == 0).all()
        opt.step()
        opt.zero_grad()
        masked.apply_to_weights()
    assert (lin.weight[:, [1, 3]] == 0).all()
    assert (lin.weight[:, [0, 2]] != 0).all()


def test_dense_mask_costs_nothing():
    lin = nn.Linear(4, 3)
    masked = M.MaskedWeights({"weight": lin.weight})
    masked.install(M.full_mask({"weight": lin.weight}))
    assert masked._multipliers == []


def test_fingerprint_changes_with_any_weight():
    a = {"w": torch.tensor([True, False, True])}
    b = {"w": torch.tensor([True, True, False])}
    assert M.fingerprint(a) == M.fingerprint({"w": a["w"].clone()})
    assert M.fingerprint(a) != M.fingerprint(b)
    assert M.sparsity_of(a) == 1 / 3
    assert M.layer_sparsity(b) == {"w": 1 / 3}


def _reference_keep_top(scores, n_keep, alive):
    """Brute force: rank live weights by (score desc, position asc), NaN and dead last."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()]).tolist()
    live = torch.cat([a.reshape(-1) for a in alive.values()]).tolist()
    key = lambda i: (0 if live[i] and flat[i] == flat[i] else 1, -flat[i] if live[i] and flat[i] == flat[i] else 0, i)
    kept = set(sorted(range(len(flat)), key=key)[:n_keep])
    return [i in kept for i in range(len(flat))]


def test_keep_top_equals_brute_force_with_ties_nan_and_dead_weights():
    gen = torch.Generator().manual_seed(3)
    for trial in range(30):
        scores = {"a": torch.randint(0, 5, (7, 3), generator=gen).float(),
                  "b": torch.randint(0, 5, (11,), generator=gen).float()}
        scores["b"][trial % 11] = float("nan")
        alive = {n: torch.rand(s.shape, generator=gen) > 0.3 for n, s in scores.items()}
        n_live = sum(int(a.sum()) for a in alive.values())
        n_keep = int(torch.randint(0, n_live + 1, (1,), generator=gen))
        got = M.keep_top(scores, n_keep, alive)
        flat = torch.cat([got["a"].reshape(-1), got["b"].reshape(-1)]).tolist()
        assert flat == _reference_keep_top(scores, n_keep, alive), trial


# --- layer-wise distributions ----------------------------------------------------------------------

ERK_SHAPES = {"a": torch.Size([2, 2]), "b": torch.Size([10, 10]), "c": torch.Size([20, 10])}


def test_erk_densities_by_hand_with_a_layer_capped_at_dense():
    # raw sum/prod: a 4/4 = 1, b 20/100 = 0.2, c 30/200 = 0.15; N = 304, density 0.5 -> 152 alive.
    # eps = 152 / (4 + 20 + 30) = 2.81 puts a at 2.81 > 1: a is dense, then
    # eps = (50 + 100 - 2) / (20 + 30) = 2.96: b = 0.592, c = 0.444 (4 + 59.2 + 88.8 = 152)
    d = M.layer_densities(ERK_SHAPES, 0.5, "erk")
    assert d["a"] == 1.0
    assert d["b"] == pytest.approx(0.592, abs=1e-12) and d["c"] == pytest.approx(0.444, abs=1e-12)
    # ideal zeros 0, 40.8, 111.2: floors 151, the missing one goes to b (remainder 0.8 > 0.2)
    assert M.layer_zero_counts(ERK_SHAPES, 0.5, "erk") == {"a": 0, "b": 41, "c": 111}


def test_erk_density_is_proportional_to_sum_over_product_of_dims_for_convs():
    shapes = {"conv": torch.Size([8, 4, 3, 3]), "fc": torch.Size([10, 72])}
    d = M.layer_densities(shapes, 0.2, "erk")
    assert d["conv"] / d["fc"] == pytest.approx((18 / 288) / (82 / 720), rel=1e-12)
    assert d["conv"] * 288 + d["fc"] * 720 == pytest.approx(0.2 * 1008, rel=1e-12)


def test_uniform_densities_and_largest_remainder_counts():
    shapes = {"x": torch.Size([7]), "y": torch.Size([13]), "z": torch.Size([29])}
    assert M.layer_densities(shapes, 0.65, "uniform") == {"x": 0.65, "y": 0.65, "z": 0.65}
    # s = 0.35: ideal 2.45, 4.55, 10.15 (17.15 -> 17 zeros); floors 16, the missing one to y (0.55)
    assert M.layer_zero_counts(shapes, 0.35, "uniform") == {"x": 2, "y": 5, "z": 10}
    with pytest.raises(ValueError, match="no per-layer densities"):
        M.layer_densities(shapes, 0.5, "global")


@pytest.mark.parametrize("distribution", M.DISTRIBUTIONS)
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.97])
def test_every_distribution_hits_the_exact_total(distribution, sparsity):
    torch.manual_seed(1)
    scores = {"a": torch.rand(3, 5), "b": torch.rand(17), "c": torch.rand(4, 2, 3, 3), "d": torch.rand(1)}
    mask = M.mask_at_sparsity(scores, sparsity, distribution=distribution)
    total = sum(s.numel() for s in scores.values())
    assert total - M.count_alive(mask) == round(sparsity * total)
    if distribution != "global":
        counts = M.layer_zero_counts({n: s.shape for n, s in scores.items()}, sparsity, distribution)
        assert {n: m.numel() - int(m.sum()) for n, m in mask.items()} == counts
        # each layer keeps its own highest scores
        for n, s in scores.items():
            if mask[n].any() and (~mask[n]).any():
                assert s[mask[n]].min() > s[~mask[n]].max()


def test_per_layer_top_k_differs_from_global_and_never_regrows():
    scores = {"big": torch.tensor([10.0, 9.0, 8.0, 7.0]), "small": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    assert M.mask_at_sparsity(scores, 0.5)["small"].sum() == 0  # one threshold: the small layer goes
    uniform = M.mask_at_sparsity(scores, 0.5, distribution="uniform")
    assert uniform["big"].tolist() == [True, True, False, False]
    assert uniform["small"].tolist() == [False, False, True, True]
    alive = {"big": torch.tensor([False, False, False, True]), "small": torch.ones(4, dtype=torch.bool)}
    m = M.mask_at_sparsity(scores, 0.5, alive=alive, distribution="uniform")
    # big already has 3 zeros (more than its 2): it keeps them, small takes 1 so the total is 4
    assert m["big"].tolist() == [False, False, False, True]
    assert m["small"].tolist() == [False, True, True, True]

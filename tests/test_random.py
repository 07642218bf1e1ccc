import torch
import torch.nn.functional as F
from torch import nn

from baselines.random import RandomPruning, mask_seed, random_scores
from suite.experiment import load_config
from suite.masks import count_alive, full_mask, layer_sparsity, prunable_weights
from suite.methods import Context, build_method
from suite.selection import select


def _setup(target=0.9, seed=42, keep_first_dense=False, model_seed=0):
    cfg = load_config(None, [f"prune.target_sparsity={target}", f"seed={seed}",
                             f"prune.keep_first_dense={str(keep_first_dense).lower()}"], method="random")
    torch.manual_seed(model_seed)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    weights = prunable_weights(model, keep_first_dense=keep_first_dense)
    ctx = Context(cfg=cfg, model=model, weights=weights, data=None, loss_fn=F.cross_entropy,
                  device=torch.device("cpu"), epochs=1, steps_per_epoch=1)
    return build_method(cfg), ctx, weights


def _start(method, ctx, mask):
    """The mask the method's start_round stands for, as the runner installs it."""
    return select(method, ctx, mask, method.start_round(0, ctx, mask))


def test_random_mask_has_the_exact_zero_count():
    for target in (0.5, 0.9, 0.987):
        method, ctx, weights = _setup(target)
        assert isinstance(method, RandomPruning)
        mask = _start(method, ctx, full_mask(weights))
        total = 432 + 36864 + 640  # 37936
        assert total - count_alive(mask) == round(target * total)
        assert all(m.dtype == torch.bool and m.shape == weights[n].shape for n, m in mask.items())


def test_random_mask_is_seeded_and_independent_of_the_global_stream():
    method, ctx, weights = _setup(seed=42)
    first = _start(method, ctx, full_mask(weights))
    torch.manual_seed(12345)  # another global RNG state (another rank, another init) changes nothing
    torch.rand(1000)
    again = _setup(seed=42, model_seed=7)
    second = _start(again[0], again[1], full_mask(again[2]))
    assert all(torch.equal(first[n], second[n]) for n in first)
    other = _setup(seed=123)
    third = _start(other[0], other[1], full_mask(other[2]))
    assert any(not torch.equal(first[n], third[n]) for n in first)


def test_random_scores_do_not_reuse_the_init_stream():
    # torch.manual_seed(seed) initialises the model; the mask's generator must not replay that stream
    assert mask_seed(42) != 42
    scores = random_scores({"w": torch.Size([100])}, 42)
    torch.manual_seed(42)
    assert not torch.equal(scores["w"], torch.rand(100))


def test_random_mask_is_uniform_over_layers_and_respects_dense_layers():
    method, ctx, weights = _setup(0.8)
    mask = _start(method, ctx, full_mask(weights))
    for name, s in layer_sparsity(mask).items():
        assert abs(s - 0.8) < 0.06, (name, s)  # 432 to 36864 weights: binomial spread well below this
    method, ctx, weights = _setup(0.8, keep_first_dense=True)
    mask = _start(method, ctx, full_mask(weights))
    assert list(mask) == ["3.weight", "5.weight"]
    assert 37504 - count_alive(mask) == round(0.8 * 37504)


def test_random_does_nothing_when_the_mask_is_already_pruned_or_target_is_zero():
    method, ctx, weights = _setup(0.5)
    mask = _start(method, ctx, full_mask(weights))
    assert _start(method, ctx, mask) is None  # e.g. a resumed run: never re-draw
    cfg = load_config(None, ["prune.target_sparsity=0"], method="random")
    assert _start(build_method(cfg), ctx, full_mask(weights)) is None

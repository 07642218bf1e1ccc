"""suite/selection.py: a hook's Prune becomes a mask by the method's own scores under the run's layout
(distribution, structure), with exact counts; masks and None pass through; nothing is scored when the
mask is already there."""
import pytest
import torch

from suite.experiment import load_config
from suite.masks import count_alive
from suite.methods import Prune, PruningMethod
from suite.selection import select


class Fixed(PruningMethod):
    """Scores given up front; records the alive count of every mask it is scored under."""

    def __init__(self, cfg, scores):
        super().__init__(cfg)
        self.given, self.seen = scores, []

    def scores(self, ctx, mask):
        self.seen.append(count_alive(mask))
        return self.given


SCORES = {"a": torch.tensor([[8.0, 1.0, 7.0, 2.0], [6.0, 3.0, 5.0, 4.0]]),   # 8 weights
          "b": torch.tensor([[0.5, 0.25], [0.75, 0.125]])}                   # 4 weights, all below a's


def _full():
    return {n: torch.ones_like(s, dtype=torch.bool) for n, s in SCORES.items()}


def _method(*overrides):
    return Fixed(load_config(None, list(overrides), method="progressive"), SCORES)


def test_global_prune_keeps_the_highest_scores_over_all_layers():
    mask = select(_method(), None, _full(), Prune(0.5))  # 6 of 12 zeros: b's four and a's two lowest
    assert mask["a"].tolist() == [[True, False, True, False], [True, True, True, True]]
    assert not mask["b"].any()


def test_uniform_prune_keeps_each_layers_own_top_half():
    mask = select(_method("prune.distribution=uniform"), None, _full(), Prune(0.5))
    assert mask["a"].tolist() == [[True, False, True, False], [True, False, True, False]]
    assert mask["b"].tolist() == [[True, False], [True, False]]


def test_nm_structure_comes_from_the_run_not_the_method():
    mask = select(_method("prune.structure=nm", "prune.distribution=uniform"), None, _full(), Prune(0.5))
    # 2:4 along each row of a (b's rows of 2 are not a multiple of 4: its two lowest go unstructured)
    assert mask["a"].tolist() == [[True, False, True, False], [True, False, True, False]]
    assert count_alive(mask) == 6


def test_steps_rescore_under_the_mask_so_far_and_only_lose_weights():
    method = _method()
    mask = select(method, None, _full(), Prune(0.75, steps=(0.25, 0.5)))
    assert method.seen == [12, 9, 6]  # scored three times, each under the previous step's mask
    assert count_alive(mask) == 3
    assert mask["a"].tolist() == [[True, False, True, False], [True, False, False, False]]


def test_nothing_is_scored_when_the_mask_already_has_the_zeros():
    method = _method()
    half = select(method, None, _full(), Prune(0.5))
    assert select(method, None, half, Prune(0.5)) is None
    assert select(method, None, half, Prune(0.25)) is None
    assert select(method, None, _full(), Prune(0.0)) is None
    assert method.seen == [12]


def test_a_mask_or_none_passes_through_untouched():
    mask = _full()
    assert select(_method(), None, mask, mask) is mask
    assert select(_method(), None, mask, None) is None


def test_a_method_without_scores_cannot_ask_for_prune():
    with pytest.raises(NotImplementedError, match="defines no scores"):
        select(PruningMethod(load_config(None, [], method="progressive")), None, _full(), Prune(0.5))

import math

import pytest
import torch

from baselines.rigl import cosine_drop_fraction, drop_count, rigl_update
from baselines.set import regrowth_seed, set_update
from suite.masks import count_alive


def _layer(values, alive):
    return torch.tensor(values, dtype=torch.float32), torch.tensor(alive, dtype=torch.bool)


def test_rigl_update_drops_the_smallest_live_and_grows_the_largest_dense_gradients_by_hand():
    # one layer of 8: live at 0, 1, 2, 4, 6 (n = 5), alpha 0.5 -> k = floor(2.5) = 2
    w, alive = _layer([0.9, -0.1, 0.5, 0.0, 0.05, 0.0, -0.7, 0.0], [1, 1, 1, 0, 1, 0, 1, 0])
    g = torch.tensor([9.0, 0.0, 0.0, 0.2, 5.0, 3.0, 0.0, 0.4])
    new = rigl_update({"l": w}, {"l": g}, {"l": alive}, 0.5)["l"]
    # dropped: |w| smallest among live = 0.05 (pos 4) and 0.1 (pos 1); survivors 0, 2, 6
    # candidates 1, 3, 4, 5, 7 with |g| 0, 0.2, 5, 3, 0.4: grow pos 4 (just dropped: may come back) and 5
    assert new.tolist() == [True, False, True, False, True, True, True, False]
    assert alive.tolist() == [True, True, True, False, True, False, True, False]  # input untouched


def test_rigl_ties_are_broken_by_position():
    w, alive = _layer([0.3, 0.3, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0], [1, 1, 1, 1, 0, 0, 0, 0])
    g = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    new = rigl_update({"l": w}, {"l": g}, {"l": alive}, 0.5)["l"]  # k = 2
    # equal |w|: the earliest survive (0, 1); equal |g|: the earliest candidates grow (4, 5)
    assert new.tolist() == [True, True, False, False, True, True, False, False]


def _random_layers(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {"conv.weight": (8, 3, 3, 3), "fc1.weight": (50, 72), "fc2.weight": (10, 50)}
    weights = {n: torch.randn(s, generator=g) for n, s in shapes.items()}
    grads = {n: torch.randn(s, generator=g) for n, s in shapes.items()}
    density = {"conv.weight": 0.5, "fc1.weight": 0.1, "fc2.weight": 0.3}
    mask = {n: torch.rand(s, generator=g) < density[n] for n, s in shapes.items()}
    weights = {n: w * mask[n] for n, w in weights.items()}  # dead weights are 0, as in training
    return weights, grads, mask


def test_rigl_update_exact_counts_and_positions_on_every_layer():
    weights, grads, mask = _random_layers()
    alpha = 0.3
    new = rigl_update(weights, grads, mask, alpha)
    for name in mask:
        old, m = mask[name].reshape(-1), new[name].reshape(-1)
        n = int(old.sum())
        k = math.floor(alpha * n)
        assert k > 0 and int(m.sum()) == n, name               # per-layer sparsity unchanged
        # survivors, by hand: the n - k largest |w| among the live positions
        live = torch.nonzero(old).squeeze(1)
        w_abs = weights[name].reshape(-1).abs()
        survivors = torch.zeros_like(m)
        survivors[live[torch.argsort(w_abs[live], descending=True, stable=True)[:n - k]]] = True
        assert bool((m & survivors).sum() == n - k), name      # every survivor lives on
        # grown, by hand: the k largest |g| among all other positions (a just-dropped one included)
        candidates = ~survivors
        g = grads[name].reshape(-1).abs()
        grown = torch.zeros_like(m)
        grown[torch.nonzero(candidates).squeeze(1)[torch.argsort(g[candidates], descending=True, stable=True)[:k]]] = True
        assert torch.equal(m, survivors | grown), name
        assert int((grown & old).sum()) < k, name               # not simply the old mask back
    assert count_alive(new) == count_alive(mask)
    assert all(new[n].dtype == torch.bool and new[n].shape == mask[n].shape for n in mask)
    again = rigl_update(weights, grads, mask, alpha)
    assert all(torch.equal(again[n], new[n]) for n in new)  # deterministic


def test_drop_count_is_a_floor_and_zero_leaves_the_mask():
    assert [drop_count(n, 0.3) for n in (0, 3, 4, 10, 333)] == [0, 0, 1, 3, 99]
    weights, grads, mask = _random_layers()
    same = rigl_update(weights, grads, mask, 0.0)
    assert all(torch.equal(same[n], mask[n]) for n in mask)
    with pytest.raises(ValueError, match="drop_fraction"):
        rigl_update(weights, grads, mask, 1.5)


def test_cosine_drop_fraction():
    assert cosine_drop_fraction(0.3, 0.0, 0.75) == pytest.approx(0.3)
    assert cosine_drop_fraction(0.3, 0.375, 0.75) == pytest.approx(0.15)
    assert cosine_drop_fraction(0.3, 0.75, 0.75) == pytest.approx(0.0, abs=1e-15)
    assert cosine_drop_fraction(0.3, 0.8, 0.75) == 0.0


def test_set_update_drops_by_magnitude_and_regrows_uniformly_from_the_generator():
    weights, _, mask = _random_layers(1)
    gen = lambda: torch.Generator().manual_seed(regrowth_seed(42, 0, 3))
    new = set_update(weights, mask, 0.3, gen())
    for name in mask:
        n = int(mask[name].sum())
        k = math.floor(0.3 * n)
        kept = mask[name] & new[name]
        assert int(new[name].sum()) == n and int(kept.sum()) >= n - k, name
        live_abs = weights[name].abs()[mask[name]]
        survivors_min = float(live_abs.sort().values[k])
        # every dropped live weight is at most the smallest survivor's magnitude
        dropped = mask[name] & ~new[name]
        assert float(weights[name].abs()[dropped].max()) <= survivors_min, name
    # the same generator state gives the same rewiring; another epoch's seed gives another
    assert all(torch.equal(set_update(weights, mask, 0.3, gen())[n], new[n]) for n in new)
    other = set_update(weights, mask, 0.3, torch.Generator().manual_seed(regrowth_seed(42, 0, 4)))
    assert any(not torch.equal(other[n], new[n]) for n in new)
    assert len({regrowth_seed(42, 0, 1), regrowth_seed(42, 1, 0), regrowth_seed(43, 0, 1), 42}) == 4


def test_set_regrowth_is_uniform_over_the_candidates():
    # a layer of 40 with 10 live: 3 dropped, 3 regrown among the 33 others; over many draws every
    # candidate is chosen about 3 / 33 of the time
    w = torch.zeros(40)
    w[:10] = torch.arange(1, 11, dtype=torch.float32)
    alive = w != 0
    candidates = torch.ones(40, dtype=torch.bool)
    candidates[3:10] = False                # the 7 largest always survive
    counts = torch.zeros(40)
    g = torch.Generator().manual_seed(0)
    draws = 3000
    for _ in range(draws):
        new = set_update({"l": w}, {"l": alive}, 0.3, g)["l"]
        assert bool(new[3:10].all()) and int(new.sum()) == 10
        counts += (new & candidates).float()
    freq = counts[candidates] / draws
    assert float(freq.sum()) == pytest.approx(3.0)
    # binomial spread 0.005 at 3000 draws: 0.03 is about 6 of it
    assert float(freq.min()) > 3 / 33 - 0.03 and float(freq.max()) < 3 / 33 + 0.03


@pytest.fixture(scope="module")
def rigl_ranks(tmp_path_factory):
    from safetensors.torch import load_file

    from helpers import ROOT, launch_2proc
    out = tmp_path_factory.mktemp("ddp_rigl")
    proc = launch_2proc([str(ROOT / "tests" / "ddp_rigl_script.py"), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [load_file(str(out / f"rank{r}.safetensors")) for r in range(2)]


@pytest.mark.ddp
@pytest.mark.slow
def test_rigl_and_set_under_two_ranks_agree_and_equal_one_process(rigl_ranks):
    import ddp_rigl_script as S
    rigl, set_mask, grads = S.single_process()
    assert rigl_ranks[0].keys() == rigl_ranks[1].keys()
    for key in rigl_ranks[0]:
        assert torch.equal(rigl_ranks[0][key], rigl_ranks[1][key]), key  # bitwise the same on both ranks
    for name in rigl:
        # DDP's averaged gradient of the two halves is the whole batch's, up to float rounding
        torch.testing.assert_close(rigl_ranks[0][f"grad/{name}"], grads[name], rtol=1e-5, atol=1e-7)
        assert torch.equal(rigl_ranks[0][f"rigl/{name}"], rigl[name]), name
        assert torch.equal(rigl_ranks[0][f"set/{name}"], set_mask[name]), name
    # the update really moved weights: the masks are not the starting one
    _, mask, _, _ = S.fixed_problem()
    assert any(not torch.equal(rigl[n], mask[n]) for n in mask)
    assert all(int(rigl[n].sum()) == int(mask[n].sum()) for n in mask)


def test_grown_weights_start_at_zero_with_zero_momentum_after_install():
    from torch import nn

    from suite.masks import MaskedWeights
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    weights = {"0.weight": model[0].weight, "2.weight": model[2].weight}
    g = torch.Generator().manual_seed(2)
    start = {n: torch.rand(w.shape, generator=g) < 0.4 for n, w in weights.items()}
    masked = MaskedWeights(weights)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masked.install(start, opt)
    x, y = torch.randn(32, 10, generator=g), torch.randint(0, 3, (32,), generator=g)
    for _ in range(3):  # momentum builds up on the live weights
        masked.apply_to_weights()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads = {n: w.grad.clone() for n, w in weights.items()}  # dense: dead weights have gradients too
        masked.apply_to_grads()
        opt.step()
        opt.zero_grad()
        masked.apply_to_weights()
    new = rigl_update(weights, grads, start, 0.5)
    with torch.no_grad():  # stale values everywhere, so that a missing zeroing would show
        for w in weights.values():
            opt.state[w]["momentum_buffer"].add_(0.5)
            w.add_(torch.where(w == 0, 7.0, 0.0))
    before = {n: w.detach().clone() for n, w in weights.items()}
    momentum_before = {n: opt.state[w]["momentum_buffer"].clone() for n, w in weights.items()}
    masked.install(new, opt)
    for n, w in weights.items():
        grown, dropped, kept = new[n] & ~start[n], start[n] & ~new[n], new[n] & start[n]
        assert int(grown.sum()) > 0 and int(dropped.sum()) > 0, n
        buf = opt.state[w]["momentum_buffer"]
        assert int((w.detach()[grown | dropped] != 0).sum()) == 0, n   # exactly 0
        assert int((buf[grown | dropped] != 0).sum()) == 0, n         # zeroed state
        assert torch.equal(w.detach()[kept], before[n][kept]), n        # survivors untouched
        assert torch.equal(buf[kept], momentum_before[n][kept]), n


def test_adamw_moments_restart_at_zero_wherever_rigl_changes_the_mask(tmp_path):
    # both moments of AdamW are per position and are zeroed where the mask changes; its step count is
    # one per tensor (torch keeps no per-position count), so it carries on: a regrown weight's first
    # updates use the tensor's bias correction, as RigL's reference does with zeroed accumulators
    from accelerate import Accelerator
    from suite import experiment as E
    from suite.trainer import Runner
    cfg = E.load_config(None, ["data.name=synthetic", "model.name=tiny_mlp", "train.batch_size=64",
                               "train.steps=12", "train.optimizer=adamw", "train.lr=0.01", "train.weight_decay=0.1",
                               "rigl.update_every=3", "prune.target_sparsity=0.5", "wandb.mode=disabled"],
                        method="rigl")
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    install, checked = runner._install, []

    def checking_install(mask):
        opt = runner.optimizer.optimizer if runner.optimizer is not None else None
        if mask is None or opt is None or not opt.state:
            return install(mask)
        old = {n: m.clone() for n, m in runner.masked.mask.items()}
        state = {n: {k: v.clone() for k, v in opt.state[w].items()} for n, w in runner.weights.items()}
        changed = install(mask)
        for n, w in runner.weights.items():
            new = runner.masked.mask[n]
            moved, kept = old[n] ^ new, old[n] & new
            for key in ("exp_avg", "exp_avg_sq"):
                s = opt.state[w][key]
                assert int(torch.count_nonzero(s[moved | ~new])) == 0, (n, key)  # regrown, dropped, dead: 0
                assert torch.equal(s[kept], state[n][key][kept]), (n, key)     # survivors keep their moments
            assert torch.equal(opt.state[w]["step"], state[n]["step"])
            checked.append(int(moved.sum()))
        return changed

    runner._install = checking_install
    runner.run(progress=False)
    assert len(checked) >= 4 and sum(checked) > 0  # RigL did move weights, under AdamW, at several updates
    opt = runner.optimizer.optimizer
    for n, w in runner.weights.items():  # after training: every pruned position has zero moments
        dead = ~runner.masked.mask[n]
        assert int(torch.count_nonzero(opt.state[w]["exp_avg"][dead])) == 0
        assert int(torch.count_nonzero(opt.state[w]["exp_avg_sq"][dead])) == 0
        assert int(torch.count_nonzero(w.detach()[dead])) == 0


def test_rigl_and_set_updates_follow_a_step_budget():
    from baselines.set import SparseEvolutionary
    from suite import experiment as E
    from suite.errors import ConfigError
    from suite.methods import Context, build_method
    from suite.schedules import Budget
    cfg = E.load_config(None, ["train.steps=20", "rigl.drop_fraction=0.4"], method="rigl")
    rigl = build_method(cfg, Budget(20, 8))  # 2.5 epochs; updates end at 0.75 of them (1.875 epochs)
    w = {"w": torch.arange(1.0, 11.0).reshape(2, 5)}
    mask = {"w": torch.tensor([[True] * 5, [False] * 5])}
    ctx = Context(cfg=cfg, model=None, weights=w, data=None, loss_fn=None, device=torch.device("cpu"), epochs=3,
                  steps_per_epoch=8, budget=Budget(20, 8))
    grads = {"w": torch.arange(10.0).reshape(2, 5)}
    # past 0.75 of the 2.5-epoch budget the mask stays (0.63 of the 3 epochs started would not be past it)
    assert rigl.after_backward(0, 1.9, ctx, mask, grads) is None
    # at t = 1.0 epoch: the fraction 0.4 of training, alpha_t = 0.2 (1 + cos(pi 0.4 / 0.75)), floor(alpha_t 5) weights
    moved = rigl.after_backward(0, 1.0, ctx, mask, grads)["w"] ^ mask["w"]
    assert int(moved.sum()) == 2 * math.floor(0.2 * (1 + math.cos(math.pi * 0.4 / 0.75)) * 5)
    with pytest.raises(ConfigError, match=r"^set.update_every: under train.steps SET rewires every N"):
        build_method(E.load_config(None, ["train.steps=20"], method="set"), Budget(20, 8)).check_budget()
    set_ = build_method(E.load_config(None, ["train.steps=20", "set.update_every=5"], method="set"), Budget(20, 8))
    assert isinstance(set_, SparseEvolutionary) and set_.step_interval() == 5
    assert set_.after_step(0, 20 / 8, ctx, mask) is None  # not after the last step
    assert set_.after_step(0, 15 / 8, ctx, mask)["w"].sum() == 5  # a rewiring keeps the count
    assert set_.end_epoch(0, 1, ctx, mask) is None  # no epoch-end rewiring when it rewires by steps

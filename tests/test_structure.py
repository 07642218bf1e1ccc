"""prune.structure: N:M and channel masks from the shared mask code, for every method that ranks
weights; exact patterns and counts, monotonic progressive runs, enforcement after training."""
import pytest
import torch
from accelerate import Accelerator

from suite import experiment as E
from suite import masks as M
from suite.errors import ConfigError
from suite.selection import select
from suite.trainer import Runner, run_experiment
from tests.helpers import TINY, tensors

CNN = ["data.name=synthetic", "model.name=tiny_cnn", "train.epochs=2", "train.batch_size=64", "train.lr=0.05",
       "wandb.mode=disabled"]


def nm_groups(mask: torch.Tensor, m: int) -> torch.Tensor:
    """Alive count of every group of m consecutive weights of a row."""
    rows = M.rows_of(mask)
    return rows.reshape(rows.shape[0], -1, m).sum(-1)


def whole_channels(mask: torch.Tensor) -> bool:
    rows = M.rows_of(mask)
    return bool((rows.all(1) | ~rows.any(1)).all())


# --- the mask code -----------------------------------------------------------------------------

def test_nm_by_hand_two_of_four_with_positional_ties():
    scores = {"w": torch.tensor([[4.0, 1.0, 3.0, 2.0, 5.0, 5.0, 5.0, 0.0]])}
    mask = M.mask_at_sparsity(scores, 0.5, structure="nm", nm=(2, 4))["w"]
    # group 1 keeps 4 and 3; in group 2 three 5s tie: the earliest two live
    assert mask.tolist() == [[True, False, True, False, True, True, False, False]]


@pytest.mark.parametrize("distribution", M.DISTRIBUTIONS)
@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (3, 8)])
def test_nm_pattern_is_exact_and_the_rest_takes_the_exact_count(distribution, nm):
    n, m = nm
    torch.manual_seed(0)
    # a: rows of 8, b: conv rows of 4*3*3 = 36 (N:M for M = 4; not for 8), c: rows of 5 (never)
    scores = {"a": torch.rand(6, 8), "b": torch.rand(4, 4, 3, 3), "c": torch.rand(3, 5)}
    total = sum(s.numel() for s in scores.values())  # 207
    target = 1 - n / m
    mask = M.mask_at_sparsity(scores, target, distribution=distribution, structure="nm", nm=nm)
    structured = M.nm_layers({k: s.shape for k, s in scores.items()}, m)
    assert structured == (["a", "b"] if m == 4 else ["a"])
    for k in structured:
        assert (nm_groups(mask[k], m) == n).all()  # every group exactly N alive
        # the N kept are the group's highest scores
        s = M.rows_of(scores[k]).reshape(scores[k].shape[0], -1, m)
        kept = M.rows_of(mask[k]).reshape_as(s)
        assert (torch.where(kept, s, torch.inf).amin(-1) >= torch.where(kept, -torch.inf, s).amax(-1)).all()
    # the layers without the pattern take the rest of the exact count round(s * N)
    assert total - M.count_alive(mask) == round(target * total)


def test_nm_partial_sparsity_converts_whole_groups_and_only_loses_them():
    torch.manual_seed(1)
    weights = {"a": torch.randn(8, 16), "b": torch.randn(4, 8, 1, 1)}
    total_groups = 8 * 4 + 4 * 2
    alive = None
    previous = M.full_mask(weights)
    for step, s in enumerate([0.1, 0.2, 0.35, 0.5]):
        w = {k: v + 0.3 * torch.randn_like(v) * step for k, v in weights.items()}  # training moves weights
        mask = M.mask_at_sparsity(M.magnitude_scores(w), s, alive=alive, structure="nm", nm=(2, 4))
        counts = torch.cat([nm_groups(mask[k], 4).reshape(-1) for k in mask])
        assert set(counts.tolist()) <= {2, 4}  # a group is dense or converted, never between
        assert int((counts == 2).sum()) == round(s / 0.5 * total_groups)  # exact count of groups
        assert all(bool((mask[k] <= previous[k]).all()) for k in mask)  # converted groups stay converted
        previous = alive = mask
    assert (counts == 2).all()


def test_nm_beyond_the_pattern_by_hand():
    # 16 weights at 0.625: round(0.625 * 16) = 10 zeros. The 2:4 pattern keeps 8 (4, 3 | 9, 8 | 7, 6 |
    # and the first two 0s of row 2's second group); the two lowest of those 8 (the 0s) go as well
    scores = {"w": torch.tensor([[4.0, 1.0, 3.0, 2.0, 9.0, 8.0, 0.5, 0.1], [6.0, 7.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]])}
    mask = M.mask_at_sparsity(scores, 0.625, structure="nm", nm=(2, 4), distribution="global")["w"]
    assert mask.int().tolist() == [[1, 0, 1, 0, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("distribution", M.DISTRIBUTIONS)
def test_nm_beyond_the_pattern_keeps_at_most_n_and_the_exact_count_and_only_loses_weights(distribution):
    torch.manual_seed(3)
    weights = {"a": torch.randn(8, 16), "b": torch.randn(4, 8, 1, 1), "c": torch.randn(3, 5)}
    total = sum(v.numel() for v in weights.values())  # 175
    alive, previous = None, M.full_mask(weights)
    for step, s in enumerate([0.3, 0.5, 0.7, 0.9, 0.98]):
        w = {k: v + 0.3 * torch.randn_like(v) * step for k, v in weights.items()}
        mask = M.mask_at_sparsity(M.magnitude_scores(w), s, alive=alive, distribution=distribution,
                                  structure="nm", nm=(2, 4))
        assert total - M.count_alive(mask) == round(s * total)  # exact count at every step
        assert all(bool((mask[k] <= previous[k]).all()) for k in mask)  # monotonic across the pattern
        if s >= 0.5:
            for k in ("a", "b"):
                assert int(nm_groups(mask[k], 4).max()) <= 2  # the kernels' pattern holds beyond it
        previous = alive = mask
    # beyond the pattern the survivors are the highest scores among the full pattern's survivors
    scores = {k: torch.rand(v.shape) for k, v in weights.items()}
    full = M.mask_at_sparsity(scores, 0.5, structure="nm", nm=(2, 4))
    beyond = M.mask_at_sparsity(scores, 0.9, structure="nm", nm=(2, 4))
    expected = M.mask_at_sparsity(scores, 0.9, alive=full)
    assert all(torch.equal(beyond[k], expected[k]) for k in beyond)


def test_channel_global_by_hand():
    # channel sums: a: 1, 10, 2 (rows of 2); b: 3, 4 (rows of 3); 12 weights, target 0.5 = 6 zeros
    scores = {"a": torch.tensor([[0.5, 0.5], [5.0, 5.0], [1.0, 1.0]]),
              "b": torch.tensor([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])}
    mask = M.mask_at_sparsity(scores, 0.5, structure="channel")
    # lowest first: a0 (1, 2 weights), a2 (2, 2 more), b0 (3, 3 more: 7 > 6, stop); b1 and a1 protected
    assert mask["a"].tolist() == [[False, False], [True, True], [False, False]]
    assert mask["b"].all()
    # at 0.75 (9 zeros) b0 fits too; b1 is b's best channel and is never pruned
    mask = M.mask_at_sparsity(scores, 0.75, structure="channel")
    assert M.rows_of(mask["b"]).all(1).tolist() == [False, True]
    assert M.count_total(mask) - M.count_alive(mask) == 7


@pytest.mark.parametrize("distribution", M.DISTRIBUTIONS)
def test_channel_masks_are_whole_channels_exact_and_never_empty_a_layer(distribution):
    torch.manual_seed(2)
    scores = {"a": torch.rand(6, 8), "b": torch.rand(4, 4, 3, 3), "c": torch.rand(3, 5)}
    shapes = {k: s.shape for k, s in scores.items()}
    for s in (0.3, 0.6, 0.95):
        mask = M.mask_at_sparsity(scores, s, distribution=distribution, structure="channel")
        goal = round(s * sum(v.numel() for v in scores.values()))
        zeros = M.count_total(mask) - M.count_alive(mask)
        assert all(whole_channels(m) for m in mask.values())
        assert all(M.rows_of(m).any(1).sum() >= 1 for m in mask.values())  # no layer emptied
        assert zeros <= goal
        if distribution == "global":
            # the longest prefix of the channels, lowest summed score first, that fits
            sums = sorted((float(M.rows_of(v).sum(1)[i]), k, i) for k, v in scores.items()
                          for i in range(v.shape[0]))
            best = {k: max(range(v.shape[0]), key=lambda i: float(M.rows_of(v).sum(1)[i])) for k, v in scores.items()}
            used, expected = 0, set()
            for _score, k, i in sums:
                if i == best[k]:
                    continue
                size = M.rows_of(scores[k]).shape[1]
                if used + size > goal:
                    break
                used += size
                expected.add((k, i))
            assert {(k, i) for k, m in mask.items() for i in range(m.shape[0]) if not M.rows_of(m)[i].any()} == expected
        else:
            counts = M.layer_zero_counts(shapes, s, distribution)
            for k, m in mask.items():
                rows = M.rows_of(m)
                assert int((~rows.any(1)).sum()) == min(rows.shape[0] - 1, counts[k] // rows.shape[1])


def test_channel_progressive_steps_are_monotonic():
    torch.manual_seed(3)
    w = {"a": torch.randn(16, 8), "b": torch.randn(8, 16)}
    alive = None
    for step, s in enumerate([0.1, 0.3, 0.5, 0.7]):
        w = {k: v + 0.5 * torch.randn_like(v) for k, v in w.items()}
        mask = M.mask_at_sparsity(M.magnitude_scores(w), s, alive=alive, structure="channel")
        assert all(whole_channels(m) for m in mask.values())
        if alive is not None:
            assert all(bool((mask[k] <= alive[k]).all()) for k in mask)
        alive = mask


def test_unstructured_default_is_unchanged():
    torch.manual_seed(4)
    scores = {"a": torch.rand(37, 11), "b": torch.rand(101)}
    for d in M.DISTRIBUTIONS:
        a = M.mask_at_sparsity(scores, 0.729, distribution=d)
        b = M.mask_at_sparsity(scores, 0.729, distribution=d, structure="unstructured", nm=(1, 8))
        assert all(torch.equal(a[k], b[k]) for k in a)


# --- the config --------------------------------------------------------------------------------

def test_structure_settings_keep_old_hashes_and_are_checked():
    base = E.load_config(None, ["train.epochs=4"])
    assert E.experiment_hash(E.load_config(None, ["train.epochs=4", "prune.structure=unstructured",
                                                  "prune.nm=[1,8]"])) == E.experiment_hash(base)
    nm = E.load_config(None, ["train.epochs=4", "prune.structure=nm", "prune.target_sparsity=0.5"])
    assert nm.prune.structure == "nm" and E.experiment_hash(nm) != E.experiment_hash(base)
    for override, message in [
        (["prune.structure=nm", "prune.target_sparsity=0.3"], "prune.target_sparsity: 0.3 is below the 0.5 of "
                                 "the 2:4 pattern (its mask would keep dense groups); set prune.target_sparsity >= 0.5"),
        (["prune.structure=nm", "prune.nm=[4,4]"], "prune.nm: expected [N, M] with 1 <= N < M, got [4, 4]"),
        (["prune.structure=channel"], "prune.structure: channel pruning removes whole output channels, and the "
                                      "model's output reads the last prunable layer's (a classifier's classes, the "
                                      "GPT's residual stream); set prune.keep_last_dense=true"),
        (["prune.structure=blocks"], "prune.structure: 'blocks' is not one of unstructured, nm, channel"),
    ]:
        with pytest.raises(ConfigError) as err:
            E.load_config(None, ["train.epochs=4", *override])
        assert str(err.value) == message
    for method in ("rigl", "set"):
        with pytest.raises(ConfigError) as err:
            E.load_config(None, ["train.epochs=4", "prune.structure=channel", "prune.keep_last_dense=true"],
                          method=method)
        assert str(err.value) == (f"prune.structure: method '{method}' supports only unstructured, nm (got channel); "
                                  "set prune.structure=unstructured")
    for method in ("rigl", "set"):  # drop and grow keeps every group at exactly N: the pattern's sparsity only
        with pytest.raises(ConfigError) as err:
            E.load_config(None, ["train.epochs=4", "prune.structure=nm"], method=method)
        assert str(err.value) == (f"prune.target_sparsity: 0.9 is not the sparsity of the 2:4 pattern, which method "
                                  f"'{method}' keeps exactly; set prune.target_sparsity=0.5 (1 - 2/4)")
    assert E.load_config(None, ["train.epochs=4", "prune.structure=nm"]).prune.target_sparsity == 0.9
    # every method that ranks weights keeps the setting (the dense control resets it)
    for method in ("progressive", "gmp", "lth", "oneshot", "snip", "grasp", "synflow", "random", "rigl", "set"):
        cfg = E.load_config(None, ["train.epochs=4", "prune.structure=nm", "prune.target_sparsity=0.5"], method=method)
        assert cfg.prune.structure == "nm", method
    assert E.load_config(None, ["prune.structure=channel"], method="dense").prune.structure == "unstructured"


# --- every method gets it, through its own hooks ----------------------------------------------

METHOD_HOOKS = ["progressive", "gmp", "oneshot", "snip", "grasp", "synflow", "random", "lth"]


@pytest.mark.parametrize("structure", ["nm", "channel"])
@pytest.mark.parametrize("method", METHOD_HOOKS)
def test_every_ranking_method_prunes_in_the_pattern(tmp_path, method, structure):
    extra = (["prune.target_sparsity=0.5"] if structure == "nm" else ["prune.keep_last_dense=true",
                                                                      "prune.target_sparsity=0.6"])
    cfg = E.load_config(None, [*TINY, "wandb.mode=disabled", "synflow.iterations=3", "lth.rate=0.5",
                               f"prune.structure={structure}", *extra], method=method)
    runner = Runner(cfg, tmp_path, Accelerator(cpu=True))
    method_obj, ctx = runner.method, runner.ctx
    mask = runner.masked.mask
    hooks = [lambda m: method_obj.start_round(0, ctx, m)]
    hooks += [lambda m, e=e: method_obj.end_epoch(0, e, ctx, m) for e in range(1, cfg.train.epochs + 1)]
    hooks += [lambda m: method_obj.after_step(0, float(cfg.train.epochs), ctx, m)]  # one-shot's cut is a step
    hooks += [lambda m: method_obj.end_round(0, ctx, m)]
    for hook in hooks:
        new = select(method_obj, ctx, mask, hook(mask))
        if new is not None:
            assert all(bool((new[k].cpu() <= mask[k].cpu()).all()) for k in new)  # only loses weights
            mask = {k: v.cpu() for k, v in new.items()}
    assert M.count_alive(mask) < M.count_total(mask)  # it pruned
    if structure == "nm":
        for k in M.nm_layers({k: v.shape for k, v in mask.items()}, 4):
            assert set(nm_groups(mask[k], 4).unique().tolist()) <= {2, 4}
    else:
        assert all(whole_channels(m) for m in mask.values())


# --- RigL and SET under N:M: drop and grow within each group -------------------------------------

def test_drop_and_grow_keeps_every_nm_group_at_exactly_n():
    from baselines.rigl import rigl_update
    from baselines.set import set_update

    torch.manual_seed(5)
    weights = {"a": torch.randn(6, 16), "b": torch.randn(4, 8, 1, 1), "c": torch.randn(3, 5)}
    mask = M.mask_at_sparsity({k: torch.rand(v.shape) for k, v in weights.items()}, 0.5, structure="nm", nm=(2, 4))
    grads = {k: torch.randn(v.shape) for k, v in weights.items()}
    for new in (rigl_update(weights, grads, mask, 0.3, nm=(2, 4)),
                set_update(weights, mask, 0.3, torch.Generator().manual_seed(0), nm=(2, 4))):
        for k in ("a", "b"):
            assert (nm_groups(new[k], 4) == 2).all()
            assert not torch.equal(new[k], mask[k])  # it rewired
        assert {k: int(v.sum()) for k, v in new.items()} == {k: int(v.sum()) for k, v in mask.items()}
    # by hand: one group [w 3, 1 | dead, dead], drop 1 of 2 live (the |1|), grow the best gradient of the group
    w = {"l": torch.tensor([[3.0, 1.0, 0.0, 0.0]])}
    alive = {"l": torch.tensor([[True, True, False, False]])}
    g = {"l": torch.tensor([[0.0, 0.0, 0.5, 2.0]])}
    assert rigl_update(w, g, alive, 0.5, nm=(2, 4))["l"].tolist() == [[True, False, False, True]]


# --- real runs: the pattern holds after training, pruned weights are exactly 0 --------------------

@pytest.mark.parametrize("structure, extra", [
    ("nm", ["prune.target_sparsity=0.5"]),
    ("nm", ["--method=rigl", "prune.target_sparsity=0.5", "rigl.update_every=2"]),
    ("channel", ["prune.target_sparsity=0.5", "prune.keep_last_dense=true"]),
])
def test_progressive_run_keeps_the_pattern_and_enforces_it(tmp_path, structure, extra):
    method = next((e.split("=")[1] for e in extra if e.startswith("--method=")), "progressive")
    extra = [e for e in extra if not e.startswith("--method=")]
    cfg = E.load_config(None, [*CNN, f"prune.structure={structure}", "prune.update_every_steps=3", *extra], method)
    outcome = run_experiment(cfg, tmp_path, Accelerator(cpu=True), progress=False)
    mask = {k: v.bool() for k, v in tensors(outcome.run_dir / "mask.safetensors").items()}
    weights = tensors(outcome.run_dir / "model.safetensors")
    for k, m in mask.items():
        assert (weights[k][~m] == 0).all()  # enforcement: every pruned weight is exactly 0
    if structure == "nm":
        # tiny_cnn: conv1 rows of 3*3*3 = 27 (no pattern), conv2 rows of 8*3*3 = 72 and fc rows of 64 (2:4)
        assert M.nm_layers({k: v.shape for k, v in mask.items()}, 4) == ["conv2.weight", "fc.weight"]
        for k in ("conv2.weight", "fc.weight"):
            assert (nm_groups(mask[k], 4) == 2).all()
        total = M.count_total(mask)
        assert total - M.count_alive(mask) == round(0.5 * total)
        assert outcome.result["achieved_sparsity"] == 0.5
    else:
        assert set(mask) == {"conv1.weight", "conv2.weight"}  # the classifier is kept dense
        assert all(whole_channels(m) for m in mask.values())
        assert outcome.result["achieved_sparsity"] <= 0.5


def test_a_pattern_no_layer_carries_is_one_line_exit_2(tmp_path, capsys):
    """Issue 25, case 2: prune.nm=[1,7] on LeNet (rows of 40, 300 and 100 inputs) exited 0 labelled
    "1:7 (N:M)" with nothing N:M; refused before any data loads or folder is made."""
    from suite.run import main
    code = main(["--no-progress", "--out", str(tmp_path), "model.name=lenet300", "prune.structure=nm", "prune.nm=[1,7]",
                 "wandb.mode=disabled"])
    assert (code, capsys.readouterr().err.strip().splitlines()) == (2, [
        "error: prune.nm: 1:7 applies to no prunable layer of lenet300: no row length (40, 100, 300 inputs) is a "
        "multiple of 7, so nothing would be N:M; choose an M that divides one"])
    assert not list(tmp_path.rglob("seed_*"))
    from suite.preflight import check_run
    check_run(E.load_config(None, ["model.name=lenet300", "prune.structure=nm", "prune.nm=[1,5]"]), files=False)  # 40, 300, 100

"""The figures (suite.report.figures) cannot lie: the reference group by protocol and named, 'kept dense' only
where a group kept the layer, one Holm family per forest plot, files named by their family in words."""
import math
import re

import pytest

from suite.report import figures


@pytest.fixture(scope="module")
def plan(committed_study):
    built = committed_study
    return figures.plan(built.groups, "progressive", built.table("head_to_head").rows)


def test_the_animations_and_dynamics_show_the_reference_group_by_protocol(committed_study, plan):
    """Not the variant whose settings sort first (the channel-structured one): the group most head-to-head rows
    are compared with, named in the caption."""
    built = committed_study
    head = built.table("head_to_head").rows
    [animation] = [f for f in plan if f.kind == "training_animation"]
    [g] = animation.groups
    used = [r["reference_group"] for r in head if r["reference_sparsity"] == 0.98]
    assert g.id == max(set(used), key=used.count) and g.label == "progressive" and animation.reference is g
    assert "The reference group progressive training at 98%" in animation.caption
    for f in (f for f in plan if f.kind == "dynamics" and not f.stem.endswith("_variants")):
        refs = [h for h in f.groups if h.method == "progressive"]
        if f.reference is None:  # a sparsity of the budget that no progressive group ran: none drawn
            assert refs == [] and "the reference group" not in f.caption, f.stem
            continue
        assert refs == [f.reference], f.stem  # no other variant of the reference method beside it
        assert f"the reference group {f.reference.label}," in f.caption


def test_kept_dense_only_on_the_groups_that_kept_the_layer(committed_study, plan, monkeypatch, tmp_path):
    built = committed_study
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, stem: drawn.append(fig) or [])
    [layers] = [f for f in plan if f.kind == "layers" and f.stem == "layers-98-20ep-kaiming"]
    figures.plot_layers(layers.groups, tmp_path / "x", figures.method_colors(built.groups))
    texts = [t.get_text() for t in drawn[0].axes[0].texts]
    kept = [g for g in layers.groups if g.protocol("dense_layers")]
    fair = ["gmp", "grasp", "oneshot", "random", "rigl", "set", "snip", "synflow"]  # the fair protocol's
    assert sorted(g.label for g in kept) == sorted([f"{m} [fc3 kept dense]" for m in fair] + [
        "progressive [channel, fc3 kept dense]", "progressive [channel, uniform, fc3 kept dense]",
        "progressive [fc3 kept dense]", "progressive [uniform, fc3 kept dense]"])
    pruned_it = len(layers.groups) - len(kept)
    # one bar each (fc3), none on the 18 (progressive's three schedule variants among them)
    assert texts.count("kept dense") == len(kept) == 12 and pruned_it == 18
    assert drawn[0].axes[0].get_yscale() == "log"  # density at 98%: a 3-fold difference stays visible


def test_one_holm_family_per_forest_plot_and_files_named_in_words(committed_study, plan):
    built = committed_study
    by_id = {g.id: g for g in built.groups}
    forests = [f for f in plan if f.kind == "forest"]
    assert sorted(f.stem for f in forests) == ["forest-78_9-160ep-kaiming", "forest-78_9-20ep-kaiming",
                                               "forest-78_9-20ep-kaiming-fc3_kept_dense",
                                               "forest-98-160ep-kaiming", "forest-98-160ep-pytorch",
                                               "forest-98-20ep-kaiming", "forest-98-20ep-kaiming-fc3_kept_dense",
                                               "forest-98-20ep-pytorch", "forest-98-380ep-kaiming"]  # the fair protocol: a family of its own
    for f in forests:
        assert len({(by_id[r["reference_group"]].match_key, by_id[r["reference_group"]].variant) for r in f.rows}) == 1
        tested = sum(1 for r in f.rows if not math.isnan(r["primary_p"]))  # a collapsed row is drawn, not tested
        assert {r["family_size"] for r in f.rows} == {tested}  # every test of the family, no other
        assert len({r["label"] for r in f.rows}) == len(f.rows)  # every row its own label
    names = [f.stem for f in plan]  # no hash of the settings: the family in words
    assert len(set(names)) == len(names) and not any(re.search(r"-b[0-9a-f]{6}", n) for n in names)
    assert "tradeoff-20ep-pytorch" in names and "frontier-98-kaiming" in names


def test_a_budget_run_only_to_match_a_cost_is_drawn_beside_its_reference_not_alone(committed_study, plan):
    """GMP's 27 and SNIP's 41 equal-FLOPs epochs, LTH's 2 x 80: no trade-off, dynamics or layers figure of their
    own (fifteen near-empty figures), but each such group is a point of its protocol's frontier figure."""
    built = committed_study
    with_reference = {g.match_key for g in built.groups if g.method == "progressive"}
    own = [f for f in plan if f.kind in ("tradeoff", "dynamics", "layers")]
    assert own and all(f.groups[0].match_key in with_reference for f in own)
    alone = [g for g in built.groups if g.match_key not in with_reference and g.method != "dense"]
    assert {g.epochs_per_cycle for g in alone} >= {27, 39, 40, 41, 80}
    on_frontier = {g.id for f in plan if f.kind == "frontier" for g in f.groups}
    assert all(g.id in on_frontier for g in alone)
    assert all(f.caption.endswith(".") and len(f.caption) > 40 for f in plan)


def test_a_collapsed_group_is_left_off_the_axis():
    """Random at 98% (60 ± 14) beside methods within 4 points: listed in a note, the axis set by the others."""
    points = [(94.2, 93.8, 94.5), (95.4, 95.1, 95.6), (60.3, 43.4, 77.2), (97.7, 97.5, 97.9), (94.6, 94.1, 95.1)]
    assert figures.collapsed(points) == {2}
    low, high = figures.axis_limits(points, {2})
    assert 93.0 < low < 93.8 and 97.9 < high < 99.0
    # a loss: the collapsed group is the one far above the others
    assert figures.collapsed([(1.50, 1.49, 1.51), (1.52, 1.5, 1.54), (3.1, 3.0, 3.2), (1.48, 1.47, 1.49)],
                             higher_is_better=False, floor=0.1) == {2}


def test_the_references_own_variants_get_a_dynamics_figure_of_their_own(committed_study, plan):
    """What limits progressive at 20 epochs: its schedules (linear per epoch, every 100 steps, cubic,
    exponential) in one figure at 98%, under one protocol, beside the dense baseline; nowhere else a variant."""
    variants = [f for f in plan if f.stem.endswith("_variants")]
    assert [f.stem for f in variants] == ["dynamics-98-20ep-kaiming-progressive_variants"]
    (f,) = variants
    assert f.reference.label == "progressive" and [g.label for g in f.groups] == [
        "dense", "progressive", "progressive [schedule cubic]", "progressive [schedule exponential]",
        "progressive [update every steps 100]"]
    assert f.caption.startswith("Test accuracy and measured sparsity per epoch at 98% (20 ep/cycle, kaiming_normal")

"""One label per group (suite.report.labels): what differs from the study's common protocol, the same in every
table and headline line, never two alike at one sparsity."""
from pathlib import Path


from suite.report.labels import duplicates, study_labels


def test_the_committed_study_has_no_two_groups_alike(committed_study):
    built = committed_study
    labels = {g.id: g.label for g in built.groups}
    assert duplicates(built.groups, labels) == {}
    at_98 = {g.label for g in built.groups if g.sparsity_key == 0.98 and g.round is None}
    # the variants the issue named, each in words: budget, init, distribution, structure, LTH rate
    assert {"progressive", "progressive [2:4]", "progressive [160 ep]", "progressive [pytorch init]",
            "progressive [channel, uniform, fc3 kept dense]", "lth", "lth [rate 0.43]", "rigl", "rigl [erk]",
            "snip [pytorch init]", "snip [160 ep]", "dense"} <= at_98 | {g.label for g in built.groups if g.method == "dense"}
    rounds = {g.label for g in built.groups if g.round == 7}
    assert rounds == {"lth [round 7]"}
    assert {g.label for g in built.groups if g.method == "shuffle" and g.sparsity_key == 0.7903} == {"shuffle of lth [round 7]"}


def test_every_table_and_headline_line_uses_the_labels(committed_study):
    built = committed_study
    labels = {g.id: g.label for g in built.groups}
    for table in built.tables:
        for row in table.rows:
            if "group" in row and row["group"] in labels:
                assert row["label"] == labels[row["group"]], table.name
    head = built.table("head_to_head").rows
    assert all(r["label_reference"] == labels[r["reference_group"]] for r in head)
    lines = [x for x in built.meta["headline"] if " vs " in x and "Answer" not in x]
    assert len(lines) == len(head)
    for line, r in zip(lines, head):  # each line starts with its family, then 'label vs reference label'
        assert line.startswith(f"[{100 * r['reference_sparsity']:.4g}%, ") and \
            f"] {r['label']} vs {r['label_reference']}: Δ " in line
    assert len(set(lines)) == len(lines)


def test_a_clash_is_found_and_told_apart():
    """Two groups that differ only in a setting the label does not name get that setting added."""
    from suite.report.load import Group, Run

    def group(experiment: str, lr: float) -> Group:
        run = Run(Path("x"), "snip", "tiny_mlp", "synthetic", 42, experiment, {"train.lr": lr, "train.momentum": lr},
                  0.9, 0.9, 90.0, 1.0, 1.0, {}, None, 1, None)
        return Group(experiment, None, [run])
    groups = [group("a", 0.1), group("b", 0.2), group("c", 0.1)]
    labels = study_labels(groups)
    assert duplicates(groups, labels) == {}
    # a and c share the common settings; b's differ and say so (its two settings, short names)
    assert labels["b"] == "snip [lr 0.2, momentum 0.2]"
    assert labels["a"] != labels["c"] and labels["a"].startswith("snip [")
    clash = duplicates(groups, {"a": "snip", "b": "snip", "c": "rigl"})
    assert [[g.experiment for g in v] for v in clash.values()] == [["a", "b"]]

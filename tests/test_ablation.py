"""The ablations (baselines/ablation.py) of real finished runs: the exact mask of each kind, the
initialisation it trains from, the run hash, the command-line errors and 2-rank DDP equality."""
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from baselines.snip import snip_scores
from helpers import ROOT, launch_2proc, run_cli
from suite import experiment as E
from suite.errors import ConfigError
from suite.masks import count_alive, fingerprint, mask_at_sparsity
from suite.results import RunFolder
from suite.run import main
from suite.trainer import Runner, run_experiment

TINY = ["data.name=synthetic", "model.name=tiny_mlp", "train.epochs=2", "train.batch_size=64", "train.lr=0.05",
        "wandb.mode=disabled"]
PRUNABLE = 192 * 32 + 32 * 16 + 16 * 10  # tiny_mlp on the synthetic 3x8x8 data: 6816 weights
KINDS = ("shuffle", "reinit", "invert")


def _train(out, method, *extra):
    cfg = E.load_config(None, [*TINY, *extra], method=method)
    return run_experiment(cfg, out, Accelerator(cpu=True), progress=False).run_dir


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Finished runs to ablate: SNIP at 80%, an LTH chain (50% per round to 75%: rounds 0, 1, 2) and
    progressive at 80%."""
    out = tmp_path_factory.mktemp("sources")
    return {"out": out, "snip": _train(out, "snip", "prune.target_sparsity=0.8"),
            "lth": _train(out, "lth", "prune.target_sparsity=0.75", "lth.rate=0.5"),
            "progressive": _train(out, "progressive", "prune.target_sparsity=0.8", "prune.t_end=1"),
            "snip_nm": _train(out, "snip", "prune.target_sparsity=0.8", "prune.structure=nm"),
            "snip_channel": _train(out, "snip", "prune.target_sparsity=0.8", "prune.structure=channel",
                                   "prune.keep_last_dense=true")}


def _cfg(kind, source, *extra):
    return E.load_config(None, [f"ablate.source={source}", *extra], method=kind)


def _start(kind, source, tmp_path):
    """A real Runner of the ablation before training, and the mask its start_round returns."""
    runner = Runner(_cfg(kind, source), tmp_path / kind, Accelerator(cpu=True))
    init = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.new_optimizer()
    return runner, init, runner.method.start_round(0, runner.ctx, runner.masked.mask)


def _source_init(source, tmp_path):
    """The weights the source run started from, rebuilt by a Runner of the source's own config."""
    cfg = E.from_dict(json.loads((source / "config.json").read_text()))
    return Runner(cfg, tmp_path / "source", Accelerator(cpu=True)).model.state_dict()


def _alive(mask):
    return {n: int(torch.count_nonzero(m)) for n, m in mask.items()}


def test_shuffle_keeps_each_layers_count_moves_positions_and_starts_from_the_source_init(sources, tmp_path):
    source_mask = RunFolder(sources["snip"]).read_mask()
    runner, init, mask = _start("shuffle", sources["snip"], tmp_path)
    assert _alive(mask) == _alive(source_mask) == {"fc1.weight": 1005, "fc2.weight": 276, "fc3.weight": 82}
    assert PRUNABLE - count_alive(mask) == round(0.8 * PRUNABLE) == 5453
    for name, m in mask.items():  # every layer is partly pruned here, so a permutation moves weights
        assert 0 < _alive(mask)[name] < m.numel()
        assert not torch.equal(m, source_mask[name]), name
    # a uniform permutation keeps about density * alive of the source's positions, not all of them
    kept = int((mask["fc1.weight"] & source_mask["fc1.weight"]).sum())
    assert kept < 0.5 * 1005
    source_init = _source_init(sources["snip"], tmp_path)
    assert init.keys() == source_init.keys()
    assert all(torch.equal(init[k], source_init[k]) for k in init)  # the source's init, bit for bit
    again = _start("shuffle", sources["snip"], tmp_path / "again")[2]
    assert all(torch.equal(mask[n], again[n]) for n in mask)  # one seeded stream


@pytest.mark.parametrize("structure", ["nm", "channel"])
def test_shuffle_of_a_structured_source_permutes_whole_units(structure):
    from types import SimpleNamespace

    from baselines.ablation import shuffle_units
    from suite.masks import rows_of
    torch.manual_seed(0)
    scores = {"a": torch.rand(6, 16), "b": torch.rand(5, 6)}  # b: rows of 6, no 2:4 groups
    prune = SimpleNamespace(structure=structure, nm=(2, 4))
    mask = mask_at_sparsity(scores, 0.5 if structure == "nm" else 0.4, structure=structure, nm=(2, 4))
    units = {n: shuffle_units(m, prune) for n, m in mask.items()}
    assert units["a"].shape == ((24, 4) if structure == "nm" else (6, 16))
    assert units["b"].shape == ((30, 1) if structure == "nm" else (5, 6))
    cfg = SimpleNamespace(prune=prune, seed=1, ablate=SimpleNamespace(source_experiment="x", source_round=0))
    from baselines.ablation import Shuffle
    shuffled = Shuffle.ablate(SimpleNamespace(name="shuffle", cfg=cfg), mask, None)
    for n in mask:  # the same units, in other places: each unit's pattern is one of the source's
        before, after = units[n], shuffle_units(shuffled[n], prune)
        assert sorted(map(tuple, after.int().tolist())) == sorted(map(tuple, before.int().tolist()))
        assert _alive({n: shuffled[n]}) == _alive({n: mask[n]})
    assert not torch.equal(shuffled["a"], mask["a"])
    rows = rows_of(shuffled["a"])
    if structure == "nm":
        assert (rows.reshape(6, 4, 4).sum(-1) == 2).all()  # still 2:4
    else:
        assert bool((rows.all(1) | ~rows.any(1)).all())  # still whole channels


def test_reinit_keeps_the_mask_and_starts_from_other_weights(sources, tmp_path):
    source_mask = RunFolder(sources["snip"]).read_mask()
    runner, init, mask = _start("reinit", sources["snip"], tmp_path)
    assert mask.keys() == source_mask.keys() and all(torch.equal(mask[n], source_mask[n]) for n in mask)
    assert runner.cfg.seed == 42 and runner.method.init_seed() != 42
    source_init = _source_init(sources["snip"], tmp_path)
    for name in runner.weights:
        assert int((init[name] == source_init[name]).sum()) == 0, name  # no weight starts where the source's did
        # the same initialiser (kaiming normal, std sqrt(2 / fan_in)), another draw
        assert abs(init[name].std() / source_init[name].std() - 1) < 0.15, name
    again = _start("reinit", sources["snip"], tmp_path / "again")[1]
    assert all(torch.equal(init[k], again[k]) for k in init)  # reproducible from its own seed stream


def test_invert_keeps_exactly_the_lowest_init_scores_at_the_source_counts(sources, tmp_path):
    source_mask = RunFolder(sources["snip"]).read_mask()
    runner = Runner(_cfg("invert", sources["snip"]), tmp_path / "invert", Accelerator(cpu=True))
    runner.new_optimizer()
    # SNIP's score, computed here independently on the ablation's model and data before it prunes
    scores = snip_scores(runner.model, runner.data.scoring_batches(1), F.cross_entropy, weights=runner.weights)
    # the ablation reproduces the source's init and data exactly: its top scores are the source's mask
    top = mask_at_sparsity(scores, 0.8)
    assert all(torch.equal(top[n].cpu(), source_mask[n]) for n in top)
    mask = runner.method.start_round(0, runner.ctx, runner.masked.mask)
    assert _alive(mask) == _alive(source_mask) == {"fc1.weight": 1005, "fc2.weight": 276, "fc3.weight": 82}
    for name, m in mask.items():
        flat = scores[name].reshape(-1)
        lowest = torch.zeros(flat.numel(), dtype=torch.bool)
        lowest[torch.argsort(flat, stable=True)[:_alive(mask)[name]]] = True
        assert torch.equal(m.reshape(-1), lowest), name
        assert float(flat[m.reshape(-1)].max()) <= float(flat[~m.reshape(-1)].min())
        # the lowest k and the highest k of n distinct scores share exactly max(0, 2k - n) positions
        k = _alive(mask)[name]
        assert int((m & source_mask[name]).sum()) == max(0, 2 * k - m.numel()), name


def test_rewire_of_a_two_by_two_diagonal_swaps_once_per_sweep():
    from baselines.ablation import rewire
    eye = torch.eye(2, dtype=torch.bool)
    # the only pair of live weights, (0,0) and (1,1), always swaps to (0,1), (1,0): and back on the next sweep
    assert rewire(eye, torch.Generator().manual_seed(0), sweeps=1).tolist() == [[False, True], [True, False]]
    assert rewire(eye, torch.Generator().manual_seed(0), sweeps=2).tolist() == [[True, False], [False, True]]
    full = torch.ones(3, 4, dtype=torch.bool)  # nothing can move in a full layer
    assert torch.equal(rewire(full, torch.Generator().manual_seed(0)), full)


def test_rewire_keeps_every_neurons_fan_in_and_fan_out_exactly(sources, tmp_path):
    source_mask = RunFolder(sources["progressive"]).read_mask()
    runner, init, mask = _start("rewire", sources["progressive"], tmp_path)
    for name, m in mask.items():
        s = source_mask[name]
        assert torch.equal(m.sum(1), s.sum(1)), name   # fan-in of every output neuron
        assert torch.equal(m.sum(0), s.sum(0)), name   # fan-out of every input
        assert not torch.equal(m, s), name
        # in a sparse layer the rewired positions are mostly new (a random graph keeps about density x alive)
        if int(s.sum()) < 0.5 * s.numel():
            assert int((m & s).sum()) < 0.6 * int(s.sum()), name
    source_init = _source_init(sources["progressive"], tmp_path)
    assert all(torch.equal(init[k], source_init[k]) for k in init)  # the source's init, bit for bit
    again = _start("rewire", sources["progressive"], tmp_path / "again")[2]
    assert all(torch.equal(mask[n], again[n]) for n in mask)  # one seeded stream


def test_ticket_is_the_source_mask_from_the_source_init(sources, tmp_path):
    source_mask = RunFolder(sources["progressive"]).read_mask()
    runner, init, mask = _start("ticket", sources["progressive"], tmp_path)
    assert mask.keys() == source_mask.keys() and all(torch.equal(mask[n], source_mask[n]) for n in mask)
    assert runner.method.init_seed() == 42
    source_init = _source_init(sources["progressive"], tmp_path)
    assert all(torch.equal(init[k], source_init[k]) for k in init)
    # ticket and reinit differ only in the init: the same mask, no weight starting in the same place
    reinit_init = _start("reinit", sources["progressive"], tmp_path / "reinit")[1]
    assert all(int((init[n] == reinit_init[n]).sum()) == 0 for n in runner.weights)


def test_ticket_trains_end_to_end_and_keeps_its_sparsity(sources):
    out = run_experiment(_cfg("ticket", sources["progressive"]), sources["out"], Accelerator(cpu=True), progress=False)
    source = json.loads((sources["progressive"] / "result.json").read_text())
    assert out.result["method"] == "ticket" and out.result["total_epochs_trained"] == 2
    assert out.result["achieved_sparsity"] == source["achieved_sparsity"]
    assert out.result["science"]["ablate.source_method"] == "progressive"
    assert (out.run_dir / "predictions.npy").is_file()


@pytest.fixture(scope="module")
def ablated(sources):
    """Each kind of ablation of the SNIP source, trained to the end in one process."""
    return {kind: run_experiment(_cfg(kind, sources["snip"]), sources["out"], Accelerator(cpu=True), progress=False)
            for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_an_ablation_trains_the_mask_it_started_with_under_the_source_budget(kind, sources, ablated):
    source = json.loads((sources["snip"] / "result.json").read_text())
    result = ablated[kind].result
    assert result["method"] == kind and result["seed"] == 42 and result["total_epochs_trained"] == 2
    assert result["target_sparsity"] == source["target_sparsity"] == 0.8
    assert result["achieved_sparsity"] == source["achieved_sparsity"] == 5453 / PRUNABLE
    assert result["layer_sparsity"] == source["layer_sparsity"]
    assert result["science"]["ablate.source_experiment"] == source["experiment"]
    assert ablated[kind].run_dir.name == "seed_42"
    assert RunFolder(ablated[kind].run_dir).finished()


def test_the_source_enters_the_hash_and_its_path_does_not(sources, tmp_path):
    snip = json.loads((sources["snip"] / "result.json").read_text())
    science = E.science_settings(_cfg("shuffle", sources["snip"]))
    assert science == {"method": "shuffle", "ablate.source_experiment": snip["experiment"],
                       "ablate.source_method": "snip", "data.name": "synthetic", "model.name": "tiny_mlp",
                       "prune.target_sparsity": 0.8, "train.batch_size": 64, "train.epochs": 2, "train.lr": 0.05}
    moved = tmp_path / "elsewhere" / sources["snip"].parent.name / "seed_42"  # the folder moved whole
    shutil.copytree(sources["snip"], moved)
    assert E.experiment_hash(_cfg("shuffle", moved)) == E.experiment_hash(_cfg("shuffle", sources["snip"]))
    hashes = {kind: E.experiment_hash(_cfg(kind, sources["snip"])) for kind in KINDS}
    assert len(set(hashes.values())) == 3
    lth = sources["lth"]
    chain = {name: E.experiment_hash(_cfg("shuffle", path))
             for name, path in (("final", lth), ("round_2", lth / "round_2"), ("round_1", lth / "round_1"))}
    assert chain["final"] == chain["round_2"] != chain["round_1"]  # the chain's last round is its final result
    assert _cfg("shuffle", lth / "round_1").ablate.source_round == 1
    assert E.science_settings(_cfg("shuffle", lth))["ablate.source_round"] == 2
    assert chain["final"] not in hashes.values()


def test_an_lth_round_is_ablated_at_its_own_sparsity_from_the_rewinding_point(sources, tmp_path):
    round_1 = sources["lth"] / "round_1"
    runner, init, mask = _start("shuffle", round_1, tmp_path)
    assert runner.cfg.prune.target_sparsity == 0.5
    assert PRUNABLE - count_alive(mask) == 3408
    assert _alive(mask) == _alive(RunFolder(round_1).read_mask())
    source_init = _source_init(sources["lth"], tmp_path)  # rewinding to epoch 0: the chain's init
    assert all(torch.equal(init[k], source_init[k]) for k in init)


def _error(argv, capsys):
    code = main(["--no-progress", *argv])
    err = capsys.readouterr().err
    return code, err.strip().splitlines()


def test_cli_errors_are_one_line_exit_2(sources, tmp_path, capsys):
    snip, lth = sources["snip"], sources["lth"]
    unfinished = tmp_path / "unfinished" / "seed_42"
    shutil.copytree(snip, unfinished)
    (unfinished / "result.json").unlink()
    cases = [
        (["--method", "shuffle"], "error: ablate.source: shuffle needs a finished result to ablate: its seed folder "
         "(runs/<experiment>/seed_<s>) or an LTH round folder (.../seed_<s>/round_<r>)"),
        (["--method", "reinit", f"ablate.source={tmp_path / 'nowhere'}"],
         f"error: ablate.source: {tmp_path / 'nowhere'}: no such run folder"),
        (["--method", "shuffle", f"ablate.source={unfinished}"],
         f"error: ablate.source: {unfinished} is not a finished result (partial: stopped after round 0 epoch 2)"),
        (["--method", "shuffle", f"ablate.source={snip.parent}"],  # the experiment folder: it said "(pending)"
         f"error: ablate.source: {snip.parent} is not a run's folder: name a seed folder, "
         "runs/<experiment>/seed_<s> (or an LTH round folder, .../seed_<s>/round_<r>)"),
        (["--method", "invert", f"ablate.source={sources['progressive']}"],
         f"error: ablate.source: {sources['progressive']} is a result of progressive, which does not score weights "
         "at initialisation (invert applies to snip, grasp, synflow)"),
        (["--method", "invert", f"ablate.source={lth / 'round_1'}"],
         f"error: ablate.source: {lth / 'round_1'} is a result of lth, which does not score weights "
         "at initialisation (invert applies to snip, grasp, synflow)"),
        (["--method", "shuffle", f"ablate.source={lth / 'round_0'}"],
         f"error: ablate.source: {lth / 'round_0'} is dense (lth): there is no mask to ablate"),
        (["--method", "shuffle", f"ablate.source={snip}", "model.name=lenet300"],
         f"error: model.name: 'lenet300' differs from the source's 'tiny_mlp' (ablate.source {snip}): an ablation "
         "trains on its source's model and data"),
        (["--method", "shuffle", f"ablate.source={snip}", "data.synthetic_train=256"],
         f"error: data.synthetic_train: 256 differs from the source's 512 (ablate.source {snip}): an ablation "
         "trains on its source's model and data"),
        (["--method", "reinit", f"ablate.source={snip}", "seed=123"],
         f"error: seed: 123 differs from the source's 42 (ablate.source {snip}): an ablation keeps its source's "
         "seed, prunable layers, sparsity and structure; leave seed out"),
        (["--method", "shuffle", f"ablate.source={snip}", "prune.target_sparsity=0.9"],
         f"error: prune.target_sparsity: 0.9 differs from the source's 0.8 (ablate.source {snip}): an ablation "
         "keeps its source's seed, prunable layers, sparsity and structure; leave prune.target_sparsity out"),
    ]
    for argv, line in cases:
        code, lines = _error(argv, capsys)
        assert (code, lines) == (2, [line]), argv
    # a budget override is the user's to make: it is a science setting of the run like any other
    assert _cfg("shuffle", snip, "train.epochs=3").train.epochs == 3


def test_the_real_command_exits_2_naming_the_missing_source(tmp_path):
    proc = run_cli(["--method", "shuffle", f"ablate.source={tmp_path / 'gone'}", "--out", str(tmp_path)])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: ablate.source: {tmp_path / 'gone'}: no such run folder"]


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_compute_the_masks_of_one_process(sources, ablated, tmp_path):
    report = tmp_path / "ranks"
    report.mkdir()
    proc = launch_2proc([str(ROOT / "tests" / "ddp_ablation_script.py"), str(sources["snip"]), str(tmp_path / "runs"),
                         str(report)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((report / f"rank_{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["held"] == ranks[1]["held"]
    for kind in KINDS:
        held = ranks[0]["held"][kind]
        assert held["alive"] == PRUNABLE - 5453
        assert held["mask"] == fingerprint(ablated[kind].runner.masked.mask), kind  # the 1-process mask
        assert json.loads((Path(held["dir"]) / "result.json").read_text())["world_size"] == 2


def test_a_damaged_source_mask_is_one_error_line(sources, tmp_path):
    damaged = tmp_path / "damaged" / "seed_42"
    shutil.copytree(sources["snip"], damaged)
    (damaged / "mask.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError) as e:  # when the config reads its source, before anything trains
        runner = Runner(_cfg("shuffle", damaged), tmp_path / "run", Accelerator(cpu=True))
        runner.method.start_round(0, runner.ctx, runner.masked.mask)
    # the one rule of what a finished result is (suite.results.read_result) already refuses it
    assert str(e.value).startswith(f"ablate.source: {damaged} is not a finished result (invalid: {damaged}/result.json: "
                                   "mask.safetensors is damaged (header length ")


@pytest.mark.slow  # real runs, one killed
def test_a_killed_ablation_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL after 2 of 6 epochs, then the same run again: the same mask, weights and metrics, bit
    for bit (reinit: the run whose init is not the seed's own)."""
    from helpers import kill_at_epoch, metrics, tensors
    slow = ["data.name=synthetic", "data.synthetic_train=6000", "data.synthetic_shape=[1,28,28]",
            "model.name=lenet300", "train.batch_size=50", "wandb.mode=disabled"]
    source = run_experiment(E.load_config(None, [*slow, "train.epochs=1", "prune.target_sparsity=0.9"],
                                          method="snip"), tmp_path / "source", Accelerator(cpu=True),
                            progress=False).run_dir
    args = ["--method", "reinit", f"ablate.source={source}", "train.epochs=6"]
    cfg = E.load_config(None, args[2:], method="reinit")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed run.py (OMP_NUM_THREADS=1): bitwise only at one thread count
    try:
        straight = run_experiment(cfg, tmp_path / "a", Accelerator(cpu=True), progress=False).run_dir
        kill_at_epoch(tmp_path / "b", args, 2)
        resumed = run_experiment(cfg, tmp_path / "b", Accelerator(cpu=True), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert resumed.status == "finished" and resumed.run_dir.name == straight.name
    for file in ("mask.safetensors", "model.safetensors"):
        a, b = tensors(straight / file), tensors(resumed.run_dir / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    strip = lambda rows: [{k: v for k, v in row.items() if k not in ("epoch_time_s", "examples_per_s")} for row in rows]
    assert strip(metrics(straight)) == strip(metrics(resumed.run_dir))
    assert len(metrics(straight)) == 6


def test_the_report_tests_each_ablation_against_its_source(tmp_path):
    """Two seeds of SNIP at 80% and their shuffle and reinit ablations: the ablation table pairs each with its
    source by seed (Δ = source − ablation, paired t, Holm over the 2 rows), and the head-to-head leaves them out."""
    from scipy import stats as sps

    from suite import report
    from suite.report.load import collapsed_seeds
    sources = [_train(tmp_path, "snip", "prune.target_sparsity=0.8", f"seed={seed}") for seed in (1, 2)]
    for kind in ("shuffle", "reinit"):
        for source in sources:
            cfg = E.load_config(None, [f"ablate.source={source}", "wandb.mode=disabled"], method=kind)
            run_experiment(cfg, tmp_path, Accelerator(cpu=True), progress=False)
    acc = {p.parent.name + p.parent.parent.name.split("-")[0]: json.loads(p.read_text())["final_test_accuracy"]
           for p in tmp_path.glob("*/seed_*/result.json")}
    built = report.build_report(tmp_path)
    rows = {r["kind"]: r for r in built.table("ablations").rows}
    assert sorted(rows) == ["reinit", "shuffle"]
    assert not [r for r in built.table("head_to_head").rows if r["method"] in ("shuffle", "reinit")]
    p_raw = {}
    groups = {g.method: g for g in built.groups}
    for kind, row in rows.items():
        src = [acc[f"seed_{s}snip"] for s in (1, 2)]
        abl = [acc[f"seed_{s}{kind}"] for s in (1, 2)]
        # a side at chance or far under its median is a failed draw: shown, not t-tested (the collapse rule)
        collapsed = bool(collapsed_seeds(groups["snip"]) or collapsed_seeds(groups[kind]))
        assert row["primary_test"] == ("none: collapsed seeds" if collapsed else "paired t"), row["collapsed"]
        assert (row["n"], row["n_source"]) == (2, 2)
        assert row["diff"] == pytest.approx(sum(src) / 2 - sum(abl) / 2, abs=1e-12)
        d = [a - b for a, b in zip(src, abl)]
        p_raw[kind] = float("nan") if d[0] == d[1] or collapsed else sps.ttest_rel(src, abl).pvalue
        assert row["source_method"] == "snip"
        assert row["outcome"].startswith("collapsed: not tested (") == collapsed
    assert {r["family_size"] for r in rows.values()} == {sum(p == p for p in p_raw.values())}
    tested = sorted((p, k) for k, p in p_raw.items() if p == p)
    if len(tested) == 2:  # Holm over two: the smaller p doubled, the larger max(2 p_min, p_max)
        (p1, k1), (p2, k2) = tested
        assert rows[k1]["primary_p_holm"] == pytest.approx(min(1, 2 * p1), rel=1e-9)
        assert rows[k2]["primary_p_holm"] == pytest.approx(min(1, max(2 * p1, p2)), rel=1e-9)
    lines = [x for x in built.meta["headline"] if "mask matters" in x]
    assert len(lines) == 1 and lines[0].startswith("[80%, 2 ep/cycle, kaiming_normal init] snip: the mask matters beyond "
                                                   "its layer densities: ")
    # the figures: ablations stand hollow beside their source in the trade-off and on the frontier, and
    # draw no lines or figures of their own (dynamics, layers, animations)
    from suite.report import figures
    plan = figures.plan(built.groups)
    drawn = {f.kind: [g.method for g in f.groups] for f in plan}
    assert [f.kind for f in plan if f.kind in ("tradeoff", "frontier")] == ["tradeoff", "frontier"]
    assert sorted(drawn["tradeoff"]) == sorted(drawn["frontier"]) == ["reinit", "shuffle", "snip"]
    assert [f.stem for f in plan if f.kind == "frontier"] == [next(f.stem for f in plan if f.kind == "frontier")]
    for f in plan:
        if f.kind not in ("tradeoff", "frontier"):
            assert not {"reinit", "shuffle"} & {g.method for g in f.groups}, f.kind
    colors = figures.method_colors(built.groups)
    frontier = next(f for f in plan if f.kind == "frontier")
    (tmp_path / "fig").mkdir()
    written = figures.plot_tradeoff(next(f for f in plan if f.kind == "tradeoff").groups, tmp_path / "fig" / "tradeoff",
                                    colors)
    written += figures.plot_frontier(frontier.groups, frontier.sparsity, tmp_path / "fig" / "frontier", colors)
    assert sorted(p.name for p in written) == ["frontier.pdf", "frontier.png", "tradeoff.pdf", "tradeoff.png"]


def _copy(source, tmp_path):
    """A copy of a finished source under the experiment folder name it was written to (so that it is
    still that result, suite.results.check_result_folder)."""
    copy = tmp_path / "copy" / source.parent.name / source.name
    shutil.copytree(source, copy)
    return copy


def _save_mask(folder, mask):
    from suite.results import save_tensors
    save_tensors(folder / "mask.safetensors", mask)


def test_an_ablation_keeps_its_sources_structure_and_pattern(sources, capsys):
    """Issue 25, case 1 (and 9): a structure or N:M pattern other than the source's is one line, exit 2
    (they were exit 0, labelled 2:4 or 1:4 over masks that were not); left out, the source's applies."""
    snip, nm, channel = sources["snip"], sources["snip_nm"], sources["snip_channel"]
    keeps = "an ablation keeps its source's seed, prunable layers, sparsity and structure"
    cases = [
        (["--method", "shuffle", f"ablate.source={snip}", "prune.structure=nm"],
         f"error: prune.structure: 'nm' differs from the source's 'unstructured' (ablate.source {snip}): {keeps}; "
         "leave prune.structure out"),
        (["--method", "shuffle", f"ablate.source={nm}", "prune.nm=[1,4]"],
         f"error: prune.nm: [1, 4] differs from the source's [2, 4] (ablate.source {nm}): {keeps}; leave prune.nm out"),
        (["--method", "shuffle", f"ablate.source={channel}", "prune.structure=unstructured"],  # case 9
         f"error: prune.structure: 'unstructured' differs from the source's 'channel' (ablate.source {channel}): "
         f"{keeps}; leave prune.structure out"),
    ]
    for argv, line in cases:
        assert _error(argv, capsys) == (2, [line]), argv
    cfg = _cfg("shuffle", nm)
    assert (cfg.prune.structure, cfg.prune.nm) == ("nm", (2, 4))
    assert _cfg("reinit", channel).prune.structure == "channel"
    assert _cfg("shuffle", snip, "prune.nm=[1,4]").prune.nm == (2, 4)  # no meaning without nm: the default


def test_a_source_whose_mask_is_not_its_results_is_no_finished_result(sources, tmp_path, capsys):
    """Issue 25, case 8: a dense mask under an 80% result was accepted (the ablation then trained it, said
    "done ... sparsity 0.0000 (target 0.8000)" and looped); the folder does not count."""
    copy = _copy(sources["snip"], tmp_path)
    _save_mask(copy, {n: torch.ones_like(m) for n, m in RunFolder(copy).read_mask().items()})
    assert not RunFolder(copy).finished()
    code, lines = _error(["--method", "shuffle", f"ablate.source={copy}", "--out", str(tmp_path / "out")], capsys)
    assert (code, lines) == (2, [
        f"error: ablate.source: {copy} is not a finished result (invalid: {copy}/result.json: mask.safetensors "
        f"holds {PRUNABLE} live of {PRUNABLE} weights, not the result's {PRUNABLE - 5453} of {PRUNABLE} (a replaced "
        "mask?); the same command runs it again)"])


def test_a_source_whose_result_and_config_disagree_is_one_line(sources, tmp_path, capsys):
    """Issue 25, case 14: result.json's method against its own config's: exit 1 "unexpected TypeError" before."""
    copy = _copy(sources["snip"], tmp_path)
    result = json.loads((copy / "result.json").read_text())
    result["method"] = "progressive"
    (copy / "result.json").write_text(json.dumps(result))
    assert _error(["--method", "invert", f"ablate.source={copy}"], capsys) == (2, [
        f"error: ablate.source: {copy}/result.json says method 'progressive' but its config says 'snip': "
        "not one result"])


def test_an_ablation_of_an_ablation_is_refused_as_the_sweep_refuses_it(sources, ablated, capsys):
    """Issue 25, partial: run.py took an ablation as a source while the sweep never does."""
    shuffled = ablated["shuffle"].run_dir
    assert _error(["--method", "reinit", f"ablate.source={shuffled}"], capsys) == (2, [
        f"error: ablate.source: {shuffled} is itself an ablation (shuffle): ablate its source instead"])


def test_a_source_mask_of_other_shapes_is_refused_before_data_or_a_folder(sources, tmp_path, capsys):
    """Issue 25, partial: the same counts in other shapes were found only after the data loaded and the
    run folder was made; the preflight reads the mask's header first."""
    copy = _copy(sources["snip"], tmp_path)
    mask = RunFolder(copy).read_mask()
    _save_mask(copy, {n: (m.t().contiguous() if n == "fc1.weight" else m) for n, m in mask.items()})
    assert RunFolder(copy).finished()  # its counts are the result's: only the shapes are wrong
    out = tmp_path / "out"
    code, lines = _error(["--method", "shuffle", f"ablate.source={copy}", "--out", str(out)], capsys)
    assert (code, lines) == (2, [
        f"error: ablate.source: {copy}/mask.safetensors holds layers fc1.weight [192, 32], fc2.weight [16, 32], "
        "fc3.weight [10, 16], not this model's prunable layers fc1.weight [32, 192], fc2.weight [16, 32], "
        "fc3.weight [10, 16]"])
    assert not list(out.rglob("seed_*"))  # no run folder made


def test_an_ablation_source_path_is_read_verbatim(sources, tmp_path, capsys):
    """Issue 25, case 10: a path with " #" or ": " was cut by YAML ("no such run folder") or became a
    mapping ("expected str, got {...}"); a path setting is taken as written."""
    for name in ("with #hash", "with: colon"):
        copy = tmp_path / name / sources["snip"].parent.name / "seed_42"
        shutil.copytree(sources["snip"], copy)
        cfg = E.load_config(None, [f"ablate.source={copy}"], method="reinit")
        assert cfg.ablate.source == str(copy)
        assert cfg.ablate.source_experiment == json.loads((copy / "result.json").read_text())["experiment"]
    assert E.parse_override("data.root=../data #2") == ("data.root", "../data #2")
    assert E.parse_override("train.lr=0.01 # a comment") == ("train.lr", 0.01)  # other settings stay YAML

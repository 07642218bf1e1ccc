"""suite/tracking.py: W&B as its users expect (issue 25 case 18), with real wandb in offline mode: names and
groups that tell experiments apart, ids unique per run folder, W&B's environment variables honoured, a
study's offline files in one folder, and no summary key chosen on the test set."""
import json
import re

from helpers import TINY, result, run_cli, run_folder, wandb_records

from suite import experiment as E
from suite import tracking as T
from suite.results import RunFolder


def offline_run(out, folder):
    """The W&B run record, config and summary of the run in `folder`, read from `<out>/wandb/`."""
    run_id = T.wandb_run_id(E.from_dict(result(folder)["config"]), folder)
    (log,) = out.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
    records = list(wandb_records(log))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    summary = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for i in r.summary.update if i.key}
    return run, summary


def test_two_experiments_of_one_method_and_sparsity_get_their_own_group_and_name(tmp_path):
    """Before: both were group `tiny_mlp-synthetic-progressive-s0.9`, name `progressive-s0.9-seed42`, id
    `<hash>-42`, with their files inside the run folders and a `round_r/best_test_accuracy` key."""
    out = tmp_path / "runs"
    folders = []
    for lr in ("0.05", "0.1"):
        proc = run_cli(["--out", str(out), *TINY, f"train.lr={lr}"], wandb="offline")
        assert proc.returncode == 0, proc.stderr
        folders.append(run_folder(proc.stdout))
    seen = []
    for folder in folders:
        experiment = result(folder)["experiment"]
        run, summary = offline_run(out, folder)
        assert run.run_group == f"tiny_mlp-synthetic-progressive-s0.9-{experiment}"
        assert run.display_name == f"progressive-s0.9-{experiment}-seed42"
        assert re.fullmatch(rf"{experiment}-42-[0-9a-f]{{8}}", run.run_id)
        assert (run.project, list(run.tags), run.job_type) == ("progressive-pruning",
                                                               ["tiny_mlp", "synthetic", "progressive"], "train")
        assert not any("best_test" in key for key in summary)  # nothing selected on the test set
        assert summary["final_test_accuracy"] == result(folder)["final_test_accuracy"]
        assert not (folder / "wandb").exists()  # one folder per study: `wandb sync <out>/wandb/offline-run-*`
        seen.append((run.run_group, run.display_name, run.run_id))
    assert len({s[0] for s in seen}) == len({s[1] for s in seen}) == len({s[2] for s in seen}) == 2


def test_wandb_environment_variables_win(tmp_path):
    """WANDB_PROJECT, WANDB_RUN_GROUP, WANDB_TAGS (added to the suite's) and WANDB_DIR, as W&B documents them."""
    out, elsewhere = tmp_path / "runs", tmp_path / "wb"
    proc = run_cli(["--out", str(out), *TINY], wandb="offline", WANDB_PROJECT="my-project",
                   WANDB_RUN_GROUP="my-group", WANDB_TAGS="ablation, night", WANDB_DIR=str(elsewhere))
    assert proc.returncode == 0, proc.stderr
    assert not (out / "wandb").exists()
    run, _ = offline_run(elsewhere, run_folder(proc.stdout))
    assert (run.project, run.run_group) == ("my-project", "my-group")
    assert list(run.tags) == ["tiny_mlp", "synthetic", "progressive", "ablation", "night"]


def test_run_ids_are_unique_per_run_folder_kept_on_resume_and_new_after_force(tmp_path):
    cfg = E.load_config(None, TINY)
    a, b = E.run_dir(cfg, tmp_path / "a"), E.run_dir(cfg, tmp_path / "b")
    first = T.wandb_run_id(cfg, a)
    assert re.fullmatch(rf"{E.experiment_hash(cfg)}-42-[0-9a-f]{{8}}", first)
    assert T.wandb_run_id(cfg, a) == first  # a resumed run: the same W&B run
    assert T.wandb_run_id(cfg, b) != first  # another --out: another run, never merged by a sync
    assert RunFolder(a).move_aside() is not None  # what --force does before it starts
    assert T.wandb_run_id(cfg, a) != first

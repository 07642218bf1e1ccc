"""suite/results.py: a run folder has one owner, proves what it holds, and loses or mixes nothing
(checkpoints fall back, torn files are not results, a forced rerun moves the old run aside)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import (LONG, ROOT, TINY, cli, copy_run, env, epoch_of, interrupt, metrics, one_error, result, run_main,
                     same_run, snapshot, tmpfs)
import launch as S
from suite import report as R
from suite import run as RUN
from suite.exits import EXIT_FAILED
from suite.experiment import load_config
from suite.provenance import code_version
from suite.results import RunFolder, previous_checkpoint, read_metrics

pytestmark = pytest.mark.usefixtures("quiet")  # W&B off, one torch thread: bitwise comparisons with subprocesses


@pytest.mark.parametrize("cut", ["empty", 64, "half", "last byte"])
def test_truncated_checkpoint_falls_back_to_the_previous_one_bitwise(cut, straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    ckpt = folder / "checkpoint.pt"
    prev_epoch = epoch_of(previous_checkpoint(ckpt))
    data = ckpt.read_bytes()
    keep = {"empty": 0, 64: 64, "half": len(data) // 2, "last byte": len(data) - 1}[cut]
    ckpt.write_bytes(data[:keep])
    code, err, done = run_main(capsys, out)
    assert code == 0, err
    (warning,) = [line for line in err if line.startswith("warning:")]
    assert "checkpoint.pt unreadable" in warning and f"resuming from the previous checkpoint (round 0 epoch " \
        f"{prev_epoch})" in warning and str(folder) in warning
    assert done == folder
    same_run(straight, folder)
    assert not ckpt.exists() and not previous_checkpoint(ckpt).exists()


@pytest.mark.parametrize("damage,part", [("wrong keys", "lacks round"), ("other experiment", "belongs to experiment"),
                                         ("other seed", "belongs to seed"), ("other model", "its model has other tensors")])
def test_foreign_checkpoint_falls_back_to_the_previous_one(damage, part, straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    ckpt = folder / "checkpoint.pt"
    saved = torch.load(ckpt, weights_only=True)
    if damage == "wrong keys":
        saved = {"weights": saved["model"]}
    elif damage == "other experiment":
        saved["experiment"] = "0123456789ab"
    elif damage == "other seed":
        saved["seed"] = 7
    else:
        saved["model"] = {"fc.weight": torch.zeros(2, 2)}
    torch.save(saved, ckpt)
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    (warning,) = [line for line in err if line.startswith("warning:")]
    assert part in warning and "resuming from the previous checkpoint" in warning
    same_run(straight, folder)


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_job_falls_back_to_the_previous_checkpoint(stopped, tmp_path):
    """Rank 0 decides which checkpoint counts (deleting the damaged one) before rank 1 reads: both
    resume from the same one. The process count is in the hash, so the stopped 1-process run stands in
    for a stopped 2-process run: moved to that run's folder and its checkpoints relabelled."""
    from helpers import launch_2proc
    from suite.config import to_dict
    from suite.experiment import experiment_hash, load_config, run_dir, with_processes
    out, one = copy_run(stopped, tmp_path)
    cfg = with_processes(load_config(None, LONG), 2)
    folder = run_dir(cfg, out)
    folder.parent.mkdir(parents=True)
    one.rename(folder)
    (folder / "config.json").write_text(json.dumps(to_dict(cfg)))
    for ckpt in (folder / "checkpoint.pt", previous_checkpoint(folder / "checkpoint.pt")):
        saved = torch.load(ckpt, weights_only=True)
        torch.save({**saved, "experiment": experiment_hash(cfg)}, ckpt)
    prev_epoch = epoch_of(previous_checkpoint(folder / "checkpoint.pt"))
    (folder / "checkpoint.pt").write_bytes(b"")
    proc = launch_2proc([str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out), *LONG])
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"resuming from the previous checkpoint (round 0 epoch {prev_epoch})" in warnings[0]
    r = result(folder)
    assert r["world_size"] == 2 and [m["epoch"] for m in metrics(folder)] == list(range(1, 41))
    assert r["total_epochs_trained"] == 40


def test_both_checkpoints_damaged_starts_over(straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    (folder / "checkpoint.pt").write_bytes(b"")
    previous_checkpoint(folder / "checkpoint.pt").write_bytes(b"garbage")
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    (warning,) = [line for line in err if line.startswith("warning:")]
    assert "checkpoint.pt unreadable" in warning and "checkpoint.prev.pt unreadable" in warning
    assert f"no usable checkpoint, starting {folder} over" in warning
    same_run(straight, folder)
    assert result(folder)["total_epochs_trained"] == 40


def test_only_the_previous_checkpoint_left_resumes_from_it(straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    (folder / "checkpoint.pt").unlink()  # a kill between the rotation and the new file's rename
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    assert any(line.startswith("resuming") for line in err) and not any("warning" in line for line in err)
    same_run(straight, folder)


def test_kill_between_the_last_checkpoint_and_metrics_loses_no_epoch(straight, stopped, tmp_path, capsys,
                                                                     monkeypatch):
    """The last epoch's checkpoint is on disk, its metrics.jsonl write never happens (a kill lands
    there: injected, since a real signal cannot be placed between two writes)."""
    from suite import trainer
    out, folder = copy_run(stopped, tmp_path)
    real = trainer.write_jsonl

    def killed_at_the_last_epoch(path, records):
        if Path(path).name == "metrics.jsonl" and len(records) == 40:
            raise trainer.Interrupted()
        real(path, records)
    monkeypatch.setattr(trainer, "write_jsonl", killed_at_the_last_epoch)
    assert run_main(capsys, out)[0] == 75
    assert epoch_of(folder / "checkpoint.pt") == 40 and len(read_metrics(folder / "metrics.jsonl")) == 39
    monkeypatch.setattr(trainer, "write_jsonl", real)
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    assert "resuming" in err[0] and "epoch 40" in err[0]
    same_run(straight, folder)  # all 40 epochs in metrics.jsonl


def test_orphan_temp_files_removed_on_next_start(straight, stopped, tmp_path, capsys):
    out, folder = copy_run(stopped, tmp_path)
    orphans = [folder / ".checkpoint.pt.abc123.tmp", folder / ".metrics.jsonl.x.tmp"]
    for p in orphans:
        p.write_bytes(b"half a file")
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    assert not any(p.exists() for p in orphans)
    same_run(straight, folder)


def test_stale_checkpoint_after_result_is_cleaned_and_result_untouched(straight, stopped, tmp_path, capsys):
    out, folder = copy_run(straight, tmp_path)
    shutil.copy(stopped / "checkpoint.pt", folder / "checkpoint.pt")  # a kill after result.json
    before = snapshot(folder)
    code, err, _ = run_main(capsys, out)
    assert code == 0 and err == [f"already finished (use --force to run again): {folder}"]
    del before["checkpoint.pt"]
    assert snapshot(folder) == before


@pytest.mark.parametrize("damage", ["not JSON", "truncated", "a field missing", "NaN accuracy", "status failed",
                                    "model.safetensors missing"])
def test_corrupt_result_is_not_finished_the_rerun_repairs_it(damage, straight, tmp_path, capsys):
    out, folder = copy_run(straight, tmp_path)
    path = folder / "result.json"
    text = path.read_text()
    data = json.loads(text)
    if damage == "not JSON":
        path.write_text("{{{")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "a field missing":
        del data["final_test_accuracy"]
        path.write_text(json.dumps(data))
    elif damage == "NaN accuracy":
        path.write_text(text.replace(f'"final_test_accuracy": {data["final_test_accuracy"]}',
                                     '"final_test_accuracy": NaN'))
    elif damage == "status failed":
        path.write_text(json.dumps({**data, "status": "failed"}))
    else:
        (folder / "model.safetensors").unlink()
    damaged = snapshot(folder)
    status = RunFolder(folder).status()
    assert status.state == "invalid" and str(folder) in status.detail
    assert S.run_status(folder).state == "invalid"
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    (moved,) = folder.parent.glob("seed_42.old-*")
    assert [line for line in err if "moved" in line] == [f"moved the previous files of {folder} to {moved}"]
    assert {k: v for k, v in snapshot(moved).items() if k != ".lock"} == \
        {k: v for k, v in damaged.items() if k != ".lock"}  # kept as it was, beside the new run
    same_run(straight, folder)


def test_force_moves_the_old_run_aside_before_starting(straight, tmp_path):
    out, folder = copy_run(straight, tmp_path)
    before = snapshot(folder)
    stopped_force = interrupt(out, 1, "--force")  # --force, then killed
    assert stopped_force == folder
    (moved,) = folder.parent.glob("seed_42.old-*")
    assert {k: v for k, v in snapshot(moved).items() if k != ".lock"} == \
        {k: v for k, v in before.items() if k != ".lock"}
    assert not (folder / "result.json").exists()  # nothing of the old run mixed into the new one
    assert RunFolder(folder).status().state == "partial"
    # the report reads neither the half-done run nor the one moved aside
    runs, skipped = R.scan_runs(out)
    assert runs == [] and [s.status for s in skipped] == ["unfinished"]


def test_run_folder_reads_torn_and_unreadable_files(tmp_path):
    folder = RunFolder(tmp_path / "seed_1")
    folder.path.mkdir()
    assert folder.status().state == "pending"
    # a torn last line, a repeated epoch (a resumed run), a line that is not a record
    (folder.path / "metrics.jsonl").write_text('{"epoch": 1, "a": 1}\n[1]\n{"epoch": 1, "a": 2}\n{"epoch": 2, "a"')
    assert folder.read_metrics() == [{"epoch": 1, "a": 2}]
    assert folder.status() == type(folder.status())("partial", "stopped after round 0 epoch 1")
    (folder.path / "failed.json").write_bytes(b"\xff\xfe")
    assert folder.failure_reason() == "failed.json is unreadable" and folder.status().state == "failed"
    (folder.path / "failed.json").unlink()
    (folder.path / "checkpoint.prev.pt").write_bytes(b"")
    (folder.path / "metrics.jsonl").unlink()
    assert folder.status() == type(folder.status())("partial", "stopped after a checkpoint")


def test_two_moves_aside_in_one_second_keep_both(tmp_path):
    folder = RunFolder(tmp_path / "seed_1")
    folder.path.mkdir()
    (folder.path / ".lock").write_text("")
    assert folder.move_aside() is None  # only the lock: nothing to move
    (folder.path / "result.json").write_text("1")
    first = folder.move_aside()
    (folder.path / "result.json").write_text("2")
    second = folder.move_aside()
    assert first != second and (first / "result.json").read_text() == "1" and (second / "result.json").read_text() == "2"
    assert sorted(p.name for p in folder.path.iterdir()) == [".lock"]


def test_result_records_the_code(straight):
    code = result(straight)["code"]
    assert set(code) == {"commit", "dirty", "diff_sha256"}
    if (ROOT / ".git").exists():
        assert len(code["commit"]) == 40 and isinstance(code["dirty"], bool)
        assert (code["diff_sha256"] is None) == (not code["dirty"])


def test_no_git_checkout_is_not_an_error(tmp_path):
    assert code_version(tmp_path) == {"commit": None, "dirty": None, "diff_sha256": None}


def _damage_result(folder: Path, damage: str) -> Path:
    """Apply one damage to a finished run folder; the folder whose result must no longer count."""
    path = folder / "result.json"
    data = json.loads(path.read_text())
    if damage == "achieved sparsity off":  # one weight more alive than the exact count says
        data["prunable_remaining"] += 1
        data["achieved_sparsity"] = 1 - data["prunable_remaining"] / data["prunable_total"]
        path.write_text(json.dumps(data))
    elif damage.endswith(" missing"):
        (folder / damage.split()[0]).unlink()
    elif damage == "mask header damaged":  # a header length of 2**60 bytes: reading it was a MemoryError
        raw = (folder / "mask.safetensors").read_bytes()
        (folder / "mask.safetensors").write_bytes((2 ** 60).to_bytes(8, "little") + raw[8:])
    elif damage == "copied to another seed":  # cp -a seed_42 seed_43
        copy = folder.parent / "seed_43"
        shutil.copytree(folder, copy, symlinks=True)
        shutil.rmtree(folder)
        return copy
    return folder


RESULT_DAMAGE = {
    "achieved sparsity off": "result.json: achieved sparsity 0.899795 (6133 of 6816 weights pruned) is not its "
                             "target 0.900000 (6134 pruned by the exact-count rule)",
    "mask.safetensors missing": "result.json: no mask.safetensors beside it",
    "model.safetensors missing": "result.json: no model.safetensors beside it",
    "metrics.jsonl missing": "result.json: no metrics.jsonl beside it",
    "mask header damaged": "result.json: mask.safetensors is damaged (header length 1152921504606846976 in a file "
                           "of ",
    "copied to another seed": "result.json: holds seed 42's result, not this folder's seed 43 (a copied folder? "
                              "the same command trains it)",
}


@pytest.mark.parametrize("damage", RESULT_DAMAGE)
def test_a_result_counts_only_with_what_its_folder_holds(damage, straight, tmp_path):
    """RunFolder (run.py and the sweep) and the report read one rule: none counts the result."""
    out, folder = copy_run(straight, tmp_path)
    folder = _damage_result(folder, damage)
    status = RunFolder(folder).status()
    assert status.state == "invalid" and status.detail.startswith(f"{folder}/{RESULT_DAMAGE[damage]}"), status
    assert S.run_status(folder).state == "invalid"  # the sweep runs it (seed 43 trains), never "done"
    runs, skipped = R.scan_runs(out)
    assert runs == [] and [(s.status, s.path) for s in skipped] == \
        [("invalid", folder.relative_to(out).as_posix())]
    assert RESULT_DAMAGE[damage] in skipped[0].reason


def test_moved_aside_means_a_seed_folder_only():
    from suite.results import moved_aside
    assert moved_aside("seed_42.old-20261203-171500") and moved_aside("seed_42.old-20261203-171500-2")
    assert not moved_aside("runs.old-2024") and not moved_aside("study.old-20261203-171500")


def test_results_under_a_folder_named_old_are_counted(straight, tmp_path):
    out = tmp_path / "study.old-20250101-000000"  # a user's folder name: not a run --force moved aside
    copy_run(straight, out)
    runs, skipped = R.scan_runs(out)
    assert [r.seed for r in runs] == [42] and skipped == []


def test_a_force_killed_inside_the_move_aside_never_leaves_a_finished_folder(straight, tmp_path):
    """move_aside moves result.json first: after a kill at any point of the move, the folder is either
    the whole old run or not finished, and the report counts nothing twice."""
    from suite.results import aside_order
    entries = sorted(p.name for p in straight.iterdir() if p.name != ".lock")
    order = [p.name for p in aside_order([straight / n for n in entries])]
    assert order[0] == "result.json"
    for k in range(1, len(order)):
        out, folder = copy_run(straight, tmp_path / f"k{k}")
        half = folder.parent / "seed_42.old-20261203-120000"
        half.mkdir()
        for name in order[:k]:  # the kill came after k moves
            shutil.move(str(folder / name), str(half / name))
        assert not RunFolder(folder).finished(), k
        runs, _ = R.scan_runs(out)
        assert runs == [], k


@pytest.mark.parametrize("damage,part,fallback", [
    ("float 0.5 mask in both", "its mask fc1.weight is torch.float32, not bool", "no usable checkpoint, starting"),
    ("one weight revived", "its mask keeps", "resuming from the previous checkpoint"),
])
def test_checkpoint_mask_must_be_bool_with_the_recorded_count(damage, part, fallback, straight, stopped, tmp_path,
                                                              capsys):
    out, folder = copy_run(stopped, tmp_path)
    paths = [folder / "checkpoint.pt", previous_checkpoint(folder / "checkpoint.pt")]
    for path in paths if damage.endswith("in both") else paths[:1]:
        saved = torch.load(path, weights_only=True)
        if damage.startswith("float"):
            saved["mask"] = {n: torch.full(m.shape, 0.5) for n, m in saved["mask"].items()}
        else:
            m = saved["mask"]["fc1.weight"].clone()
            m.view(-1)[torch.nonzero(~m.view(-1))[0]] = True
            saved["mask"]["fc1.weight"] = m
        torch.save(saved, path)
    code, err, _ = run_main(capsys, out)
    assert code == 0, err
    (warning,) = [line for line in err if line.startswith("warning:")]
    assert part in warning and fallback in warning and str(folder) in warning
    same_run(straight, folder)  # a pruned run at its exact count, never a dense one under a pruned name


@pytest.mark.slow  # two real runs, one stopped mid-way
def test_a_run_whose_folder_is_deleted_stops_and_the_new_owner_finishes(straight, tmp_path):
    """rm -rf of a running run's folder: a second process takes the new folder's lock; the first stops
    at its next write (exit 3, one line) instead of both finishing into one folder."""
    out = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "suite" / "run.py"), "--no-progress", "--out", str(out), *LONG]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, folder = time.time() + 240, None
    while time.time() < deadline and folder is None:
        found = list(out.rglob("metrics.jsonl"))
        if found and len(read_metrics(found[0])) >= 2:
            folder = found[0].parent
        time.sleep(0.005)
    assert folder is not None
    while folder.exists():  # rm -rf while the run writes into it: a file it adds mid-way fails one pass
        shutil.rmtree(folder, ignore_errors=True)
    second = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 3, err
    one_error(err.splitlines(), f"the run folder {folder} was deleted or replaced while this run wrote to it")
    assert second.returncode == 0, second.stderr
    same_run(straight, folder)


def test_a_folder_deleted_during_a_write_is_run_lost_not_a_crash(tmp_path, monkeypatch):
    """The race the test above can hit: rm -rf lands after the pre-write check, inside the checkpoint write,
    whose temp file then vanishes (FileNotFoundError). The run stops as RunLost (exit 3), not as a crash."""
    from accelerate import Accelerator

    from suite import trainer as T
    from suite.results import RunLost

    def vanish(path, state):
        shutil.rmtree(Path(path).parent)
        raise FileNotFoundError(2, "No such file or directory", str(path) + ".tmp")
    monkeypatch.setattr(T, "save_checkpoint", vanish)
    cfg = load_config(None, [*TINY, "wandb.mode=disabled"])
    with pytest.raises(RunLost, match="was deleted or replaced while this run wrote to it"):
        T.run_experiment(cfg, tmp_path / "runs", Accelerator(cpu=True), progress=False)


def test_a_checkpoint_removed_before_the_lock_file_is_run_lost_not_a_crash(tmp_path, monkeypatch):
    """The race CI hit: rm -rf has removed checkpoint.pt (the write's rename fails on it) but not yet
    `.lock`, so the lock still looks like ours. A file of a locked folder missing mid-write is RunLost."""
    from accelerate import Accelerator

    from suite import trainer as T
    from suite.results import RunLost

    def vanish(path, state):
        Path(path).unlink(missing_ok=True)
        raise FileNotFoundError(2, "No such file or directory", str(path))
    monkeypatch.setattr(T, "save_checkpoint", vanish)
    cfg = load_config(None, [*TINY, "wandb.mode=disabled"])
    with pytest.raises(RunLost, match="was deleted or replaced while this run wrote to it"):
        T.run_experiment(cfg, tmp_path / "runs", Accelerator(cpu=True), progress=False)
    (lock,) = (tmp_path / "runs").rglob(".lock")  # the lock file was still there: only the error said so


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: room for config.json, not for a checkpoint (needs root and mount)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    with tmpfs(folder, "size=64k", "no tmpfs mount allowed here (needs root)"):
        yield folder


def test_full_disk_says_no_space_left_on_the_folder(small_disk, capsys):
    """A real full file system (tmpfs), through the real write path: one line naming the folder and the
    file, exit 1, and no empty error.log (there is no room for one)."""
    code, err, _ = cli(capsys, RUN.main, ["--no-progress", "--out", str(small_disk / "runs"), *TINY])
    assert code == EXIT_FAILED
    (folder,) = {p.parent for p in (small_disk / "runs").rglob("config.json")}
    assert err == [f"error: no space left on {folder} (writing checkpoint.pt); free some space and run the same "
                   f"command again (it resumes from the last checkpoint)"]
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "config.json"]  # no temp file, no empty log


# --- issue 25 (hardb) ----------------------------------------------------------------------

import os

import pytest

from suite import results
from suite.results import RunLock, RunLocked


def test_a_finished_runs_lock_file_goes_with_its_release_and_only_then(tmp_path):
    with RunLock(tmp_path) as lock:
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
    assert (tmp_path / ".lock").exists()  # not finished: the file stays (a later run locks it again)
    with RunLock(tmp_path) as lock:
        lock.remove = True
        with pytest.raises(RunLocked):  # still held until the release
            RunLock(tmp_path).__enter__()
    assert sorted(os.listdir(tmp_path)) == []


def test_a_lock_file_removed_while_another_process_waits_on_it_is_not_taken(tmp_path, monkeypatch):
    """The holder finishes (removing `.lock`) between another process opening the file and locking it:
    that process must lock the file on disk, not the removed one (else a third could lock a new file and
    two would hold the folder)."""
    holder = RunLock(tmp_path).__enter__()
    holder.remove = True
    real_open = os.open

    def open_then_the_holder_finishes(path, flags, mode=0o777):
        fd = real_open(path, flags, mode)
        if holder.remove:
            holder.remove = False
            holder.path.unlink()  # as __exit__ with remove does: unlink while held, then release
            holder.__exit__(None, None, None)
        return fd
    monkeypatch.setattr(results.os, "open", open_then_the_holder_finishes)
    with RunLock(tmp_path) as lock:
        monkeypatch.setattr(results.os, "open", real_open)
        lock.check()  # the file on disk is the one it holds (RunLost otherwise)
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"

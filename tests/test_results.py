"""suite/results.py: the run folder's lock."""
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

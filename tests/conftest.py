"""Shared test settings: W&B stays offline, every test runs on the CPU with few threads."""
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# runs in this process pick their thread count from it (suite.threads), as the subprocesses do (helpers.env):
# one thread, bitwise comparable, and no thread line on the stderr the tests read
os.environ.setdefault("OMP_NUM_THREADS", "1")

from helpers import LONG, interrupt  # noqa: E402  (after the path is set)
from suite import run as RUN  # noqa: E402
from suite.results import previous_checkpoint  # noqa: E402


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def quiet(monkeypatch):
    """W&B disabled and one torch thread for the test (the fault tests compare runs bit for bit)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess runs (OMP_NUM_THREADS=1): bitwise comparisons
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def straight(tmp_path_factory):
    """The LONG run, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("straight")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert RUN.main(["--no-progress", "--out", str(out), *LONG]) == 0
    finally:
        mp.undo()
        torch.set_num_threads(threads)  # later test modules run as they would without this one
    (folder,) = {p.parent for p in out.rglob("result.json")}
    return folder


@pytest.fixture(scope="session")
def stopped(tmp_path_factory):
    """The LONG run stopped by SIGTERM after at least 3 epochs: checkpoint.pt and checkpoint.prev.pt."""
    folder = interrupt(tmp_path_factory.mktemp("stopped"), 3)
    assert previous_checkpoint(folder / "checkpoint.pt").is_file()
    return folder
@pytest.fixture(scope="session")
def committed_study():
    """The report built from the committed study's export (docs/results/lenet300_mnist.json)."""
    export = ROOT / "docs" / "results" / "lenet300_mnist.json"
    if not export.is_file():
        pytest.skip("the committed study's export is not here")
    from suite import report
    return report.build_report(export)

"""Shared test settings: W&B stays offline, every test runs on the CPU with few threads."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# runs in this process pick their thread count from it (suite.threads), as the subprocesses do (helpers.env):
# one thread, bitwise comparable, and no thread line on the stderr the tests read
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def committed_study():
    """The report built from the committed study's export (docs/results/lenet300_mnist.json)."""
    export = ROOT / "docs" / "results" / "lenet300_mnist.json"
    if not export.is_file():
        pytest.skip("the committed study's export is not here")
    from suite import report
    return report.build_report(export)

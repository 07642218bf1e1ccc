"""A wheel built from the repo's files installs (not editable) into a fresh environment, and its console
commands and the report on the committed export run from it, outside the checkout."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow

EXPORT = ROOT / "docs" / "results" / "lenet300_mnist.json"


def _sources(dest: Path) -> Path:
    """The repo's files as a fresh clone has them (tracked plus new, not ignored): the build writes
    build/ and *.egg-info next to them, so it runs on this copy, never in the checkout."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv holding only the wheel; torch and the other dependencies come from this
    interpreter's site-packages through a .pth file, so the system's editable install of the project
    (a finder in the system site-packages) is never on the path."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    src = _sources(tmp / "src")
    wheels = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(src)], tmp, env)
    (wheel,) = wheels.glob("progressive_pruning-*.whl")
    home = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(home)], tmp, env)
    python = home / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp, env).stdout.strip())
    # the dependencies' folder only: its .pth files (the editable finder among them) are not processed
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp, env)
    outside = tmp / "elsewhere"
    outside.mkdir()
    return {"python": python, "bin": home / "bin", "site": site, "cwd": outside, "env": env}


def test_suite_is_imported_from_the_wheel_not_the_checkout(venv):
    done = _run([str(venv["python"]), "-c", "import suite, suite.report, suite.bench, suite.datasets, launch.cli, "
                 "baselines.rigl; print(suite.__file__)"], venv["cwd"], venv["env"])
    assert Path(done.stdout.strip()) == venv["site"] / "suite" / "__init__.py"


@pytest.mark.parametrize("command", ["pp-run", "pp-report", "pp-bench"])
def test_console_commands_answer_help(venv, command):
    done = _run([str(venv["bin"] / command), "--help"], venv["cwd"], venv["env"])
    assert done.stdout.startswith("usage: ")


def test_report_on_the_committed_export_runs_from_the_wheel(venv):
    if not EXPORT.is_file():
        pytest.skip(f"{EXPORT.relative_to(ROOT)} is not committed")
    out = venv["cwd"] / "report.md"
    # configs/ is the checkout's data, not the wheel's: the published numbers and the plan are named
    _run([str(venv["python"]), "-m", "suite.report", str(EXPORT), "--out", str(out),
          "--published", str(ROOT / "configs" / "published.yaml"),
          "--plan", str(ROOT / "configs" / "reports" / "lenet300_mnist.yaml")], venv["cwd"], venv["env"])
    text = out.read_text()
    assert "| progressive " in text and "| lth " in text

"""Where a result came from: the code's git commit (and whether the tree had uncommitted changes) and
the CPU it ran on, recorded beside every result."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (else what platform knows), for provenance."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def code_version(repo: Path | None = None) -> dict:
    """The git commit of the code, whether the tree has uncommitted changes, and the sha256 of
    `git diff HEAD` when it has; every field None where there is no git checkout (never an error)."""
    repo = Path(repo or Path(__file__).resolve().parents[1])
    none = {"commit": None, "dirty": None, "diff_sha256": None}

    def git(*args: str) -> bytes | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return none
    status = git("status", "--porcelain", "--untracked-files=no")
    if status is None:
        return {**none, "commit": commit.decode().strip()}
    dirty = bool(status.strip())
    diff = git("diff", "HEAD", "--binary") if dirty else None
    return {"commit": commit.decode().strip(), "dirty": dirty,
            "diff_sha256": hashlib.sha256(diff).hexdigest() if diff is not None else None}

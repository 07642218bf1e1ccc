"""How a command ends: the exit codes of suite/run.py and launch/sweep.py (one table for both), and the
one line an unexpected error becomes (its traceback in a log, never a wall of it on the terminal)."""
from __future__ import annotations

import errno
import os
import tempfile
import time
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1        # the run failed (reason in failed.json), or an unexpected error (details in a log)
EXIT_BAD_INPUT = 2     # bad config, data file, checkpoint option or output path: one line names it
EXIT_LOCKED = 3        # another process holds the run folder
EXIT_INTERRUPTED = 75  # SIGTERM (SLURM, a sweep stopping): run the same command again to resume
EXIT_CTRL_C = 130      # Ctrl-C (SIGINT), as a shell reports it (128 + 2): the same command resumes


def log_crash(error: BaseException, folder: Path | None, name: str = "error.log") -> Path:
    """Append the traceback of an unexpected error to `<folder>/<name>` (else a temp file); the path."""
    import traceback
    text = (f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n"
            + "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    folder = Path(folder) if folder is not None else None
    for where in ([folder] if folder is not None else []) + [Path(tempfile.gettempdir())]:
        path = where / (name if where == folder else f"progressive-pruning-{os.getpid()}-{name}")
        try:
            where.mkdir(parents=True, exist_ok=True)
            size = path.stat().st_size if path.exists() else 0
            try:
                with open(path, "a") as f:
                    f.write(text)
            except OSError:
                os.truncate(path, size)  # a full disk: leave no torn (or empty) log behind
                if size == 0:
                    path.unlink(missing_ok=True)
                raise
            return path
        except OSError:
            continue
    return Path("(no writable folder for the log)")


def disk_full_line(error: BaseException) -> str | None:
    """`error: no space left on <folder> (writing <file>) ...` for a full disk, else None."""
    if not (isinstance(error, OSError) and error.errno == errno.ENOSPC):
        return None
    where = Path(error.filename) if error.filename else None
    place = f"{where.parent} (writing {where.name})" if where else "the device"
    return (f"error: no space left on {place}; free some space and run the same command again (it resumes "
            f"from the last checkpoint)")


def crash_line(error: BaseException, folder: Path | None, debug: bool = False) -> str:
    """`error: <what> (details in <log>)` for an unexpected exception; the full traceback goes to
    the log, and to stderr as well with --debug."""
    if debug:
        import traceback
        traceback.print_exception(type(error), error, error.__traceback__)
    full = disk_full_line(error)
    if full is not None:
        return full  # no log: there is no room for one
    log = log_crash(error, folder)
    what = str(error).strip().splitlines()[0] if str(error).strip() else "no message"
    return f"error: unexpected {type(error).__name__}: {what} (details in {log})"

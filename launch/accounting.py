"""What a sweep's runs did: each run folder's state, what a finished process did, the sweep's log and its
closing summary."""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

from launch.grid import Run, chain_sparsities
from launch.sweepfile import Sweep
from suite.exits import EXIT_CTRL_C, EXIT_INTERRUPTED, EXIT_LOCKED
from suite.report.fmt import duration_text
from suite.results import RunFolder

STATES = ("done", "running", "failed", "invalid", "partial", "pending")


@dataclass(frozen=True)
class Status:
    state: str        # done | running | failed | invalid | partial | pending
    detail: str = ""
    wall_time_s: float | None = None  # a run done in an export (--done): its recorded duration, no folder to read


def run_work(run: Run) -> tuple[int, str]:
    """(how much training the run does, its unit): epochs, or optimizer steps under train.steps, over all of a
    chain's rounds (a round that rewinds trains a little less: an upper bound)."""
    t = run.cfg.train
    rounds = len(chain_sparsities(run.cfg))
    return (t.steps or t.epochs) * rounds, "steps" if t.steps else "epochs"


def work_left(runs: list[Run], statuses: list[Status], jobs: int | None) -> list[str]:
    """One line per unit of work: what is left to train (running and partial runs counted whole), and, timed by this
    sweep's finished runs (their recorded wall time over their work), how long it takes on the job slots."""
    left: dict[str, list[int]] = {}
    timed: dict[str, list[float]] = {}
    for run, status in zip(runs, statuses):
        work, unit = run_work(run)
        if status.state == "done":
            seconds = (status.wall_time_s if status.wall_time_s is not None
                       else RunFolder(run.dir).read_result().get("wall_time_s"))
            if isinstance(seconds, (int, float)) and seconds > 0:
                timed.setdefault(unit, [0.0, 0.0])
                timed[unit][0] += seconds
                timed[unit][1] += work
        elif status.state in ("pending", "running", "partial", "failed", "invalid"):
            left.setdefault(unit, [0, 0])
            left[unit][0] += 1
            left[unit][1] += work
    lines = []
    for unit, (n, work) in left.items():
        line = f"work left: {n} runs, {work:,} {unit} (running and partial runs counted whole)"
        if unit in timed:
            seconds, done = timed[unit]
            rate, slots = seconds / done, jobs or 1
            line += (f"; this sweep's finished runs trained {rate:.3g} s per {unit[:-1]}: about "
                     f"{duration_text(rate * work / slots)} on {slots} job slot{'s' if slots > 1 else ''}, "
                     f"plus each run's few seconds of start-up")
        else:
            line += "; no finished run of this sweep times them yet"
        lines.append(line)
    return lines


def failure_reason(folder: Path) -> str | None:
    """The reason in `<folder>/failed.json`, or None when there is none."""
    return RunFolder(folder).failure_reason()


def run_status(folder: Path, exported: dict[str, tuple[str, float]] | None = None, out: Path | None = None) -> Status:
    """The state of a run folder, as suite.results.RunFolder reads it ("finished" is "done" here); a run not
    finished here that an export holds (`exported`: its path under `out` -> the export's name and the run's
    recorded wall time) is done there: a study that goes on on another machine skips what it exported."""
    status = RunFolder(folder).status()
    if status.state != "finished" and exported and out is not None:
        hit = exported.get(Path(folder).relative_to(out).as_posix())
        if hit is not None:
            name, seconds = hit
            return Status("done", f"in {name}", seconds)  # NaN (none recorded): untimed, no folder read
    return Status("done" if status.state == "finished" else status.state, status.detail)


ALREADY_FINISHED = "already finished"  # the line run.py starts with when another process finished the run


@dataclass(frozen=True)
class Outcome:
    run: Run
    state: str                      # done | elsewhere | failed | locked | interrupted
    reason: str = ""
    seconds: float = 0.0


def classify(rc: int, folder: Path, stderr_tail: list[str], started: float, stopped: bool) -> tuple[str, str]:
    """What a finished process did, from its folder first (launchers such as `accelerate launch` turn
    every failing exit into 1) and its exit code and stderr second."""
    run = RunFolder(folder)
    # the lock, not a message, says whether another process has it; a run another process finished
    # while this one waited counts there, not here (two sweepers must not both count it as done)
    if rc == EXIT_LOCKED or (rc != 0 and run.locked()):
        return "locked", "running elsewhere"
    if run.finished():
        if any(line.startswith(ALREADY_FINISHED) for line in stderr_tail):  # run.py found it finished by another
            return "elsewhere", "finished by another process"
        return "done", ""
    failed = folder / "failed.json"
    if failed.is_file() and failed.stat().st_mtime >= started - 1.0:  # written by this process
        return "failed", failure_reason(folder) or "failed.json without a reason"
    if rc in (EXIT_INTERRUPTED, EXIT_CTRL_C) or stopped:
        return "interrupted", "stopped by a signal; run again to resume from the checkpoint"
    # run.py's own one-line `error: ...` says more than a launcher's closing words after it
    errors = [line for line in stderr_tail if line.startswith("error: ")]
    last = errors[-1] if errors else stderr_tail[-1] if stderr_tail else "no output on stderr"
    if rc == 0:
        return "failed", f"exit 0 but no result.json ({last})"
    if rc < 0:
        return "failed", f"killed by {signal.Signals(-rc).name} ({last})"
    return "failed", f"exit {rc}: {last}"


class SweepLog:
    """`<out>/sweeps/<name>/sweep.log`: one line per event, with each failure's reason and stderr."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "sweep.log"

    def write(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a") as f:
            f.write("".join(f"{stamp} {line}\n" for line in text.splitlines()))



def summary(sweep: Sweep, outcomes: list[Outcome], skipped: dict[str, list[str]], not_started: list[Run]) -> list[str]:
    """The closing lines: counts, then each run done, skipped (and why), failed (and why) or stopped."""
    done = [o for o in outcomes if o.state == "done"]
    failed = [o for o in outcomes if o.state == "failed"]
    locked = [o.run.label for o in outcomes if o.state == "locked"]
    elsewhere = [o.run.label for o in outcomes if o.state == "elsewhere"]
    stopped = [o.run.label for o in outcomes if o.state == "interrupted"] + [r.label for r in not_started]
    skipped = {**skipped, "running elsewhere": skipped.get("running elsewhere", []) + locked,
               "finished by another process": skipped.get("finished by another process", []) + elsewhere}
    n_skipped = sum(len(v) for v in skipped.values())
    lines = [f"sweep {sweep.name}: {len(done)} done, {n_skipped} skipped, {len(failed)} failed"
             + (f", {len(stopped)} stopped" if stopped else "")]
    lines += [f"  done: {o.run.label} ({o.seconds:.1f} s)" for o in done]
    for why, labels in skipped.items():
        lines += [f"  skipped ({why}): {label}" for label in labels]
    lines += [f"  failed: {o.run.label}: {o.reason}" for o in failed]
    lines += [f"  stopped: {label}" for label in stopped]
    return lines

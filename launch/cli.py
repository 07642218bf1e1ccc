"""`python launch/sweep.py`: the command line of a sweep (parse, check, dry run, start the backend, sum up)."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from launch.ablations import NOT_FINISHED
from launch.accounting import STATES, Status, SweepLog, run_status, run_work, summary, work_left
from launch.backends import (Task, accelerate_command, accelerate_processes, array_spec, execute, gpu_slots,
                             run_command, shell_line, slurm_script, visible_gpus)
from launch.grid import Expansion, Run, describe_chain
from launch.plan import expand
from launch.sweepfile import Sweep, base_path, format_value, load_sweep, relative_out
from suite.errors import ConfigError
from suite.exits import EXIT_BAD_INPUT, EXIT_CTRL_C, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LOCKED, crash_line
from suite.results import check_output_dir
from suite.threads import CORES_ENV, available_cores

BACKENDS = ("local", "accelerate", "slurm", "print")


# --- the command line --------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="launch/sweep.py", usage="%(prog)s [options] sweep [sweep ...] [key=value ...]",
        description="Expand a sweep file (configs/sweeps/*.yaml) into runs of suite/run.py and run the "
                    "ones not finished yet; several sweep files run one after the other (a study).")
    parser.add_argument("items", nargs="+", metavar="sweep | key=value",
                        help="sweep files, e.g. configs/sweeps/quickstart.yaml, run in the order given; key=value: "
                             "settings for every run, on top of each sweep's overrides (e.g. data.root=/data)")
    parser.add_argument("--out", default="runs", help="runs folder (default: runs)")
    parser.add_argument("--backend", default="local", choices=BACKENDS,
                        help="local: subprocesses here; accelerate: each run a DDP job on all GPUs; slurm: "
                             "write a job array; print: print the commands (default: local)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs and what is done / failed / partial; run nothing (default: off)")
    parser.add_argument("--gpus", type=int, default=None, metavar="N",
                        help="local: N runs at once, one GPU each (default: no GPU pinning); accelerate: "
                             "processes per run (default: every visible GPU; with no GPU, 2 CPU processes); "
                             "slurm: GPUs per array task (default: 1)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="runs at once: local (default: --gpus or 1), accelerate (each on its own "
                             "--gpus GPUs; default: 1), slurm (array tasks at once; default: no limit)")
    parser.add_argument("--submit", action="store_true", help="slurm: submit the array with sbatch (default: off)")
    parser.add_argument("--done", action="append", default=[], metavar="JSON",
                        help="a results export (python -m suite.report --export) whose runs count as done: a "
                             "study that goes on on another machine, or after its runs folder was lost, skips "
                             "what it exported; repeatable (default: none)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run failed runs (failed.json) again; they are skipped by default")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error on stderr too (default: off; it is "
                             "always written to <out>/sweeps/<name>/error.log)")
    args = parser.parse_intermixed_args(argv)
    # a sweep file is a path; an override is key=value (a dotted key: no slash before its '=')
    is_override = [("=" in item and "/" not in item.split("=", 1)[0]) for item in args.items]
    args.sweeps = [item for item, o in zip(args.items, is_override) if not o]
    args.overrides = [item for item, o in zip(args.items, is_override) if o]
    if not args.sweeps:
        parser.error("give at least one sweep file (configs/sweeps/*.yaml)")
    args.sweep = args.sweeps[0]
    return args


def _print_dry_run(sweep: Sweep, expansion: Expansion, statuses: list[Status], todo: list[Run],
                   backend: str, jobs: int | None = None) -> None:
    runs = expansion.runs
    if sweep.ablate is not None:
        finished = sum(state == "finished" for _, state in expansion.sources)
        print(f"sweep {sweep.path}: {', '.join(sweep.ablate.kinds)} of {len(expansion.sources)} sources "
              f"({finished} finished) from {sweep.ablate.sources} -> {len(runs)} runs")
        for folder, state in expansion.sources:
            print(f"  source {state}: {folder}")
        for why, items in expansion.held_back.items():
            print(f"  held back ({why}): {len(items)}")
            if why != NOT_FINISHED:  # the unfinished sources are listed above
                print("\n".join(f"    {item}" for item in items))
    else:
        print(f"sweep {sweep.path}: {expansion.points} grid points -> {len(runs)} runs")
    width = len(str(len(runs)))
    for run, status in zip(runs, statuses):
        notes = [status.detail] if status.detail else []
        if run.covers:
            notes.append(describe_chain(run))
        elif run.label in expansion.merged:
            notes.append(_merged_note(run, expansion.merged[run.label]))
        tail = f"  ({'; '.join(notes)})" if notes else ""
        print(f"  {run.index:>{width}} {status.state:<8} {run.label}{tail}")
    counts = {s: sum(st.state == s for st in statuses) for s in STATES}
    print("status: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for line in work_left(runs, statuses, jobs):
        print(line)
    if backend == "slurm":
        print(f"would write a job array of {len(todo)} tasks (--array={array_spec(len(todo), jobs)})")
    else:
        print(f"would start {len(todo)} runs with backend {backend}")


def _merged_note(run: Run, points: list[dict]) -> str:
    """`also prune.target_sparsity=0.7,0.75 (dense does not read them)` for points sharing a folder."""
    keys = list(dict.fromkeys(k for p in points for k in p if p.get(k) != run.point.get(k)))
    values = {k: ",".join(dict.fromkeys(format_value(p[k]) for p in points if k in p)) for k in keys}
    return "also " + " ".join(f"{k}={v}" for k, v in values.items()) + f" ({run.cfg.method} does not read them)"


def main(argv: list[str] | None = None) -> int:
    """Each sweep file in turn: all are read first (a mistake in the last is found before the first runs);
    a bad input or an interruption stops the study, a failed run does not stop the sweeps after it (their
    ablations of it are held back); the exit code is the stop's, else 1 if a run failed, else 3 if one is
    still running elsewhere, else 0."""
    args = parse_args(argv)
    if len(args.sweeps) > 1:
        try:
            for path in args.sweeps:
                load_sweep(path, list(args.overrides))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
    codes = []
    for path in args.sweeps:
        args.sweep = path
        codes.append(_one_sweep(args))
        if codes[-1] in (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_CTRL_C):
            return codes[-1]
    return next((c for c in (EXIT_FAILED, EXIT_LOCKED) if c in codes), 0)


def _one_sweep(args: argparse.Namespace) -> int:
    before = os.environ.get("PP_SWEEP")  # _main sets it for its runs; a caller's process keeps its own
    try:
        return _main(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except Exception as e:  # one line, never a traceback wall; the details go to the sweep's folder
        folder = Path(args.out) / "sweeps" / Path(args.sweep).stem if Path(args.out).is_dir() else None
        print(crash_line(e, folder, args.debug), file=sys.stderr, flush=True)
        return EXIT_FAILED
    finally:
        if before is None:
            os.environ.pop("PP_SWEEP", None)
        else:
            os.environ["PP_SWEEP"] = before


def _check_flags(args: argparse.Namespace) -> None:
    """Flags no sweep can run with: ConfigError (exit 2)."""
    for flag in ("gpus", "jobs"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "gpus" else 1):
            raise ConfigError(f"--{flag}: must be at least {0 if flag == 'gpus' else 1}, got {value}")
    if args.submit and args.backend != "slurm":
        raise ConfigError("--submit: only with --backend slurm")


def _runs_to_start(args: argparse.Namespace, runs: list[Run], statuses: list[Status],
                   held_back: dict[str, list[str]]) -> tuple[list[Run], dict[str, list[str]]]:
    """The runs this pass starts, and the others' labels by why they are skipped."""
    skipped: dict[str, list[str]] = {"finished earlier": [], "failed earlier, see --retry-failed": [],
                                     **held_back}
    todo = []
    for run, status in zip(runs, statuses):
        if status.state == "done":
            skipped["finished earlier"].append(run.label)
        elif status.state == "failed" and not args.retry_failed:
            skipped["failed earlier, see --retry-failed"].append(f"{run.label}: {status.detail}")
        else:
            if status.state == "invalid" and not args.dry_run:
                print(f"warning: invalid result, running again: {run.label}: {status.detail}", file=sys.stderr,
                      flush=True)
            todo.append(run)
    return todo, skipped


def _local_tasks(args: argparse.Namespace, todo: list[Run], ids: list) -> tuple[list[Task], int, list[dict]]:
    """The local backend's tasks, how many run at once, and each slot's environment."""
    # --gpus N: N one-GPU slots; --jobs beyond N puts several runs on one GPU, round robin
    slot_env = [{"CUDA_VISIBLE_DEVICES": g} for g in gpu_slots(args.gpus, 1, ids)] if args.gpus else [{}]
    jobs = args.jobs or max(1, args.gpus or 1)
    threads = {}
    if not args.gpus and "OMP_NUM_THREADS" not in os.environ:
        # each run's share of the cores; within it a run picks its threads (suite.threads)
        cores = available_cores()
        threads = {CORES_ENV: str(max(1, cores // jobs))}
        if todo:
            print(f"threads: each run may use {threads[CORES_ENV]} of {cores} cores (--jobs {jobs}); a small model "
                  f"on the CPU uses one thread (OMP_NUM_THREADS=n sets it)", flush=True)
    return [Task(r, run_command(r), threads) for r in todo], jobs, slot_env


def _accelerate_tasks(args: argparse.Namespace, todo: list[Run], ids: list,
                      gpus_present: bool) -> tuple[list[Task], int, list[dict]]:
    """The accelerate backend's tasks, how many run at once, and each slot's environment."""
    jobs = args.jobs or 1
    processes = accelerate_processes(args.gpus)
    # --jobs J: J runs at once, each a DDP job on its own `processes` GPUs
    slot_env = [{"CUDA_VISIBLE_DEVICES": g} for g in gpu_slots(jobs, processes, ids)] \
        if gpus_present and jobs > 1 else [{}]
    tasks = []
    for r in todo:
        argv, env = accelerate_command(r, processes, gpus_present)
        if not gpus_present:
            env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")  # no oversubscribed cores
        tasks.append(Task(r, argv, env))
    return tasks, jobs, slot_env


def _exit_code(outcomes: list, stopped: bool, skipped: dict[str, list[str]]) -> int:
    """The sweep's exit status from what its runs did."""
    if stopped or any(o.state == "interrupted" for o in outcomes):
        return EXIT_INTERRUPTED
    failed_now = any(o.state == "failed" for o in outcomes)
    if failed_now or skipped["failed earlier, see --retry-failed"]:
        return EXIT_FAILED
    # a run another process still trains is not finished: the sweep is not done until it is
    return EXIT_LOCKED if any(o.state == "locked" for o in outcomes) else 0


def _main(args: argparse.Namespace) -> int:
    _check_flags(args)
    overrides = list(args.overrides)
    if args.backend == "accelerate":  # the process count is science (in the hash): N-process runs' folders
        overrides.append(f"train.processes={accelerate_processes(args.gpus)}")
    sweep = load_sweep(args.sweep, overrides)
    out = check_output_dir(args.out).resolve()
    expansion = expand(sweep, out, relative_out(out))
    runs = expansion.runs
    exported = _exported(args.done)
    needed = _sources_here(args, overrides, out) if exported else set()
    statuses = [run_status(r.dir, exported if r.dir not in needed else None, out) for r in runs]
    again = [r for r, st in zip(runs, statuses) if r.dir in needed and st.state != "done"
             and r.dir.relative_to(out).as_posix() in exported]
    if again:
        print(f"note: {len(again)} runs an export holds are trained again in {args.out}: an ablation sweep of this "
              f"command starts from their mask and weights, which an export does not hold", flush=True)
    if exported and expansion.held_back.get(NOT_FINISHED) and not _in_command(sweep.ablate.sources, args.sweeps):
        print(f"note: {len(expansion.held_back[NOT_FINISHED])} ablations held back, their sources not finished in "
              f"{args.out}: --done skips exported runs, but an export holds results, not the mask and weights an "
              f"ablation starts from; train the sources there first", file=sys.stderr, flush=True)
    todo, skipped = _runs_to_start(args, runs, statuses, expansion.held_back)

    _check_before_start(args, todo)
    if args.dry_run:
        _print_dry_run(sweep, expansion, statuses, todo, args.backend, args.jobs)
        return 0
    if args.backend == "print":
        for run in todo:
            print(shell_line(run_command(run)))
        return 0

    log = SweepLog(out / "sweeps" / sweep.name)
    os.environ["PP_SWEEP"] = sweep.name  # inherited by every run (SLURM exports it too): its W&B tag
    if args.backend == "slurm":
        return _slurm(args, sweep, todo, log)

    # longest first (epochs or steps, a chain's rounds counted; ties in grid order): the slots then finish
    # together, where one long run started last would train alone while the others idle
    todo = sorted(todo, key=lambda r: -run_work(r)[0])
    import torch
    gpus_present = torch.cuda.is_available()
    ids = visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count() if gpus_present else 0)
    tasks, jobs, slot_env = (_local_tasks(args, todo, ids) if args.backend == "local"
                             else _accelerate_tasks(args, todo, ids, gpus_present))

    log.write(f"sweep {sweep.path} backend {args.backend}: {len(runs)} runs, {len(todo)} to start")
    outcomes, stopped = execute(tasks, jobs, slot_env, log, len(runs))
    ran = {o.run.index for o in outcomes}
    not_started = [t.run for t in tasks if t.run.index not in ran]
    lines = summary(sweep, outcomes, skipped, not_started)
    print("\n".join(lines), flush=True)
    log.write("\n".join(lines))
    return _exit_code(outcomes, stopped, skipped)


def _in_command(sources: str, sweeps: list[str]) -> bool:
    """True when an ablation sweep's source sweep runs in this command too (its runs are trained first)."""
    return base_path(sources).resolve() in {Path(p).resolve() for p in sweeps}


def _sources_here(args: argparse.Namespace, overrides: list[str], out: Path) -> set[Path]:
    """The run folders an ablation sweep of this command ablates (an LTH round: its chain's seed folder): --done
    does not skip them, since an export holds their results, not the files an ablation starts from."""
    from launch.ablations import ablation_sources
    found: set[Path] = set()
    for path in args.sweeps:
        sweep = load_sweep(path, overrides)
        if sweep.ablate is not None:
            found |= {f.parent if f.name.startswith("round_") else f for f in ablation_sources(sweep, out)}
    return found


def _exported(paths: list[str]) -> dict[str, tuple[str, float]]:
    """--done: each exported run's path under the runs folder -> (the export's file name, its wall time)."""
    from suite.report.export import exported_runs
    found: dict[str, tuple[str, float]] = {}
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"--done: results export not found: {path}")
        for run, seconds in exported_runs(Path(path)).items():
            found.setdefault(run, (Path(path).name, seconds))
    return found


def _check_before_start(args: argparse.Namespace, todo: list[Run]) -> None:
    """What would fail every run, or the launch itself, checked once before anything starts (the dry
    run too): GPUs asked for that are not here, data files that are not where data.root says, a batch
    or a target no run could train with. ConfigError: exit 2."""
    from suite.preflight import check_run, data_files_problem

    if args.gpus and args.backend == "local":  # (accelerate on a CPU: --gpus N is N CPU processes)
        import torch
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ids = visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), count) if count else []
        if args.gpus > len(ids):
            raise ConfigError(f"--gpus {args.gpus}: {len(ids)} GPUs visible here "
                              f"({'no CUDA device' if not count else 'CUDA_VISIBLE_DEVICES=' + os.environ.get('CUDA_VISIBLE_DEVICES', '')}); "
                              f"leave --gpus out to run on the CPU")
    problems: dict[str, int] = {}
    for run in todo:
        problem = data_files_problem(run.cfg.data)
        if problem:
            problems[problem] = problems.get(problem, 0) + 1
    if problems:
        problem, n = next(iter(problems.items()))
        raise ConfigError(f"{problem}; {n} of the {len(todo)} runs to start read it, none started")
    for run in todo:
        try:
            check_run(run.cfg, files=False)
        except ConfigError as e:
            raise ConfigError(f"{run.label}: {e}") from None


def _slurm(args: argparse.Namespace, sweep: Sweep, todo: list[Run], log: SweepLog) -> int:
    if not todo:
        print(f"sweep {sweep.name}: every run is finished (or failed: see --retry-failed); nothing to submit")
        return 0
    gpus = 1 if args.gpus is None else args.gpus
    slurm_logs = log.folder / "slurm"
    slurm_logs.mkdir(exist_ok=True)
    script = log.folder / "array.sbatch"
    script.write_text(slurm_script(sweep, todo, gpus, args.jobs, slurm_logs))
    log.write(f"wrote {script}: {len(todo)} array tasks")
    print(f"wrote {script}: job array of {len(todo)} runs (--array={array_spec(len(todo), args.jobs)})")
    if not args.submit:
        print(f"submit with: sbatch {script}")
        return 0
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError("--submit: sbatch not found (run on a SLURM login node, or submit the script by hand)")
    done = subprocess.run([sbatch, str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"sbatch failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    print(done.stdout.strip())
    log.write(f"submitted: {done.stdout.strip()}")
    return 0

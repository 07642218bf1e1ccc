"""The backends that run a sweep's runs: the commands of one run (python, accelerate launch), a pool of
local processes on GPU slots (the local and accelerate backends), and a SLURM job array."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from launch.accounting import Outcome, SweepLog, classify
from launch.grid import Run
from launch.sweepfile import REPO, Sweep
from suite.errors import ConfigError

SLURM_TEMPLATE = REPO / "launch" / "slurm" / "sweep_array.sbatch"


# --- commands ----------------------------------------------------------------------------------

def run_command(run: Run) -> list[str]:
    """`python suite/run.py ...` for one process (CUDA_VISIBLE_DEVICES picks its GPU)."""
    return ["python", "suite/run.py", *run.args]


def accelerate_processes(gpus: int | None) -> int:
    """The processes of one accelerate-backend run: --gpus N, else every visible GPU, else 2 on the CPU."""
    import torch
    if gpus:
        return gpus
    if not torch.cuda.is_available():
        return 2
    return len(visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()))


def accelerate_command(run: Run, processes: int, gpus_present: bool) -> tuple[list[str], dict[str, str]]:
    """`accelerate launch ... suite/run.py ...` and the environment it needs. With no GPU the processes
    form a gloo group on the CPU: Accelerate needs ACCELERATE_USE_CPU=1 and --multi_gpu for that,
    else each process would train alone."""
    if gpus_present:
        config = "single_gpu.yaml" if processes == 1 else "one_node_8gpu.yaml"
        flags = ["--num_processes", str(processes)]
        env: dict[str, str] = {}
    else:
        config = "cpu_2proc.yaml"
        flags = ["--multi_gpu" if processes > 1 else "--cpu", "--num_processes", str(processes)]
        env = {"ACCELERATE_USE_CPU": "1"}
    argv = ["accelerate", "launch", "--config_file", f"launch/accelerate/{config}", *flags, "suite/run.py", *run.args]
    return argv, env


def executable(argv: list[str]) -> list[str]:
    """The argv to start: `python` and `accelerate launch` run under this very interpreter."""
    if argv[:2] == ["accelerate", "launch"]:
        return [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]
    if argv[:1] == ["python"]:
        return [sys.executable, *argv[1:]]
    return list(argv)


def shell_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    prefix = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join(prefix + [shlex.quote(a) for a in argv])


def visible_gpus(visible: str | None, device_count: int) -> list[str]:
    """The GPU ids this process may hand out: CUDA_VISIBLE_DEVICES if set, else 0..device_count-1."""
    return [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(device_count)]


def gpu_slots(slots: int, per_slot: int, ids: list[str]) -> list[str]:
    """CUDA_VISIBLE_DEVICES for each slot: `per_slot` GPUs each, in order, never shared."""
    if slots * per_slot > len(ids):
        raise ConfigError(f"{slots} x {per_slot} GPUs asked for, but only {len(ids)} visible")
    return [",".join(ids[k * per_slot:(k + 1) * per_slot]) for k in range(slots)]


# --- running -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    run: Run
    argv: list[str]                 # as a person would type it ("python ...", "accelerate launch ...")
    env: dict[str, str]


def _tail(path: Path, offset: int = 0, lines: int = 12) -> list[str]:
    """The last non-empty lines written to `path` after byte `offset` (this attempt's part of the log)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    # tqdm draws with carriage returns: keep what a terminal would show last on each line
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return [line for line in shown if line.strip()][-lines:]


def execute(tasks: list[Task], jobs: int, slot_env: list[dict[str, str]], log: SweepLog,
            total: int) -> tuple[list[Outcome], bool]:
    """Run the tasks, `jobs` at a time, each as its own process group; slot k adds `slot_env[k]` to
    the environment. SIGTERM or Ctrl-C forwards SIGTERM to every run (they write a checkpoint and exit
    75) and starts no new one; a second signal kills them. Returns the outcomes and whether stopped."""
    logs = log.folder / "logs"
    logs.mkdir(exist_ok=True)
    pending = list(tasks)
    running: dict[int, tuple[Task, subprocess.Popen, float, Path, int]] = {}
    outcomes: list[Outcome] = []
    signals = [0]

    def forward(sig: int) -> None:
        for _, proc, *_ in running.values():
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def on_signal(signum, frame) -> None:
        signals[0] += 1
        forward(signal.SIGTERM if signals[0] == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while running or (pending and not signals[0]):
            free = [k for k in range(jobs) if k not in running]
            while pending and free and not signals[0]:
                slot, task = free.pop(0), pending.pop(0)
                name = task.run.label.replace("/", ".")
                err = logs / f"{name}.err"
                extra = slot_env[slot % len(slot_env)]
                gpu = extra.get("CUDA_VISIBLE_DEVICES")
                where = f" on GPU {gpu}" if gpu is not None else ""
                # appended, so a resumed run's log keeps its earlier attempts
                header = f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}{where}: {shell_line(task.argv, task.env)}\n"
                with open(logs / f"{name}.out", "a") as out_file, open(err, "a") as err_file:
                    for f in (out_file, err_file):
                        f.write(header)
                        f.flush()  # before the child writes to the same file
                    offset = err_file.tell()
                    proc = subprocess.Popen(executable(task.argv), cwd=REPO, env={**os.environ, **task.env, **extra},
                                            stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
                running[slot] = (task, proc, time.time(), err, offset)
                if signals[0]:  # a signal came while it started
                    forward(signal.SIGTERM)
                print(f"[{task.run.index + 1}/{total}] start   {task.run.label}{where}", flush=True)
                log.write(f"start {task.run.label}{where}: {shell_line(task.argv, task.env)}")
            for slot, (task, proc, started, err, offset) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[slot]
                tail = _tail(err, offset)
                state, reason = classify(rc, task.run.dir, tail, started, bool(signals[0]))
                seconds = time.time() - started
                outcomes.append(Outcome(task.run, state, reason, seconds))
                shown = {"locked": "skipped", "elsewhere": "skipped", "interrupted": "stopped"}.get(state, state)
                note = f": {reason}" if reason else ""
                print(f"[{task.run.index + 1}/{total}] {shown:<7} {task.run.label} ({seconds:.1f} s){note}", flush=True)
                log.write(f"{state} {task.run.label} exit {rc} after {seconds:.1f} s{note}")
                if state == "failed":
                    log.write("  stderr: " + "\n  stderr: ".join(tail or ["(empty)"]))
            time.sleep(0.05)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return outcomes, bool(signals[0])


# --- SLURM -------------------------------------------------------------------------------------

def sbatch_quote(value: str) -> str:
    """A value for an `#SBATCH --opt=` line: in double quotes, so spaces and `$(...)` stay literal
    (sbatch expands nothing there; bash never reads these lines). A double quote, backslash or newline
    cannot be written safely: one ConfigError line."""
    bad = [c for c in ('"', "\\", "\n") if c in value]
    if bad:
        raise ConfigError(f"{value!r}: a SLURM #SBATCH value cannot hold {bad[0]!r}; use another --out or sweep name")
    return f'"{value}"'


def array_spec(n: int, jobs: int | None) -> str:
    """SLURM's --array for n tasks, at most `jobs` at once."""
    return f"0-{n - 1}" + (f"%{jobs}" if jobs else "")


def slurm_script(sweep: Sweep, runs: list[Run], gpus: int, jobs: int | None, log_folder: Path,
                 template: str | None = None) -> str:
    """The job array for `runs`: task i runs runs[i]; an interrupted task requeues itself."""
    template = SLURM_TEMPLATE.read_text() if template is None else template
    cases = []
    for i, run in enumerate(runs):
        argv = run_command(run) if gpus <= 1 else accelerate_command(run, gpus, True)[0]
        cases.append(f"    {i}) run_dir={shlex.quote(str(run.dir))}\n"
                     f"       set -- {shell_line(argv)} ;;")
    array = array_spec(len(runs), jobs)
    gpu_line = f"#SBATCH --gpus-per-node={gpus}" if gpus > 0 else "# (no GPUs requested: --gpus 0)"
    filled = {  # #SBATCH values are read by sbatch, not bash: double quotes, % doubled in file patterns
        "--job-name=@NAME@": f"--job-name={sbatch_quote(f'pp-{sweep.name}')}", "@ARRAY@": array,
        "--output=@LOGS@/%A_%a.out": f"--output={sbatch_quote(str(log_folder).replace('%', '%%') + '/%A_%a.out')}",
        "@REPO@": shlex.quote(str(REPO)),
    }
    text = "".join(line for line in template.splitlines(keepends=True) if not line.startswith("#|"))
    text = text.replace("# @GENERATED@", f"# Sweep job array for {sweep.path}, one task per run, written by "
                                         f"launch/sweep.py\n# from launch/slurm/sweep_array.sbatch; "
                                         f"to change it, edit the template and run the sweep again.")
    text = text.replace("#SBATCH --gpus-per-node=@GPUS@", gpu_line)
    for key, value in filled.items():
        text = text.replace(key, value)
    return text.replace("    # @RUNS@", "\n".join(cases))

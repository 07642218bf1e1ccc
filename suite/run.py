"""Run one experiment: `accelerate launch suite/run.py --method progressive [--config F] [key=value ...]`.

Parses the config, builds the Accelerator, calls the runner; nothing else. Exit codes (suite.exits):
0 finished or already finished, 1 the run failed (reason in failed.json) or an unexpected error (one
line; the traceback in <run folder>/error.log, on stderr too with --debug), 2 bad input (config,
data file, precision, output path), 3 the run is locked by another process, 75 interrupted by
SIGTERM, 130 interrupted by Ctrl-C (run the same command again to resume)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python suite/run.py` and `accelerate launch suite/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite import experiment as E  # noqa: E402
from suite.errors import ConfigError  # noqa: E402
from suite.exits import EXIT_BAD_INPUT, EXIT_CTRL_C, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LOCKED, crash_line  # noqa: E402
from suite.results import RunFolder, check_output_dir  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from suite.methods import METHODS
    parser = argparse.ArgumentParser(
        prog="suite/run.py",
        description="Train one model under one pruning method; results go to a folder named by the "
                    "hash of the science settings plus the seed.",
        epilog="config keys (override with key=value; a YAML file sets the same keys as nested sections):\n"
               + "\n".join(E.help_lines()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default=None,
                        help=f"pruning method, one of: {', '.join(sorted(METHODS))} "
                             "(default: the config's method, else progressive)")
    parser.add_argument("--config", default=None, help="YAML config file (default: none, built-in defaults)")
    parser.add_argument("--out", default="runs", help="runs folder (default: runs)")
    parser.add_argument("--force", action="store_true", help="run again even if result.json exists (default: off)")
    parser.add_argument("--print-dir", action="store_true", help="print the run folder and exit (default: off)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: off)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error on stderr too (default: off; it is "
                             "always written to <run folder>/error.log)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=0.01")
    return parser.parse_intermixed_args(argv)  # overrides may come before, between or after the options


def launched_processes() -> int:
    """The world size the launcher (accelerate launch, torchrun) set in the environment; 1 without one."""
    return max(int(os.environ.get(k, "1") or 1) for k in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"))


def check_world_size(num_processes: int) -> None:
    """Stop if a launcher started N > 1 processes but Accelerate formed no N-process group (on a
    machine with no GPU each process would silently train alone)."""
    launched = launched_processes()
    if launched > 1 and num_processes != launched:
        raise ConfigError(
            f"launched as {launched} processes but Accelerate sees a world size of {num_processes}; on a "
            f"machine without GPUs launch with: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
            f"--num_processes {launched} suite/run.py ...")


def launcher_processes(pid: int | None = None) -> int:
    """How many processes the launcher that started us was asked for (`--num_processes N` on its
    command line, read from /proc), else 1: `accelerate launch --num_processes 2` without --multi_gpu
    starts one plain process and tells it nothing."""
    pid = os.getppid() if pid is None else pid
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return 1
    if not any("accelerate" in a for a in argv):
        return 1
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--num_processes=") else \
            (argv[i + 1] if arg == "--num_processes" and i + 1 < len(argv) else None)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return 1
    return 1


def _error(text: str, code: int) -> int:
    print(f"error: {text}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and return the exit code; an unexpected exception is one line, never a traceback."""
    args = parse_args(argv)
    log_dir = None
    try:
        cfg = E.with_processes(E.load_config(args.config, args.overrides, args.method), launched_processes())
        if args.print_dir:
            print(E.run_dir(cfg, args.out))
            return 0
        if args.force or not RunFolder(E.run_dir(cfg, args.out)).finished():  # a finished run needs neither
            from suite.preflight import check_run
            check_output_dir(args.out)
            check_run(cfg)  # data files present, batch and target possible: before any data or folder
        log_dir = E.run_dir(cfg, args.out)
        return _accelerate(args, cfg)
    except ConfigError as e:
        return _error(str(e), EXIT_BAD_INPUT)
    except KeyboardInterrupt:  # Ctrl-C while starting up (imports, config, Accelerate), before the runner
        print("interrupted while starting up; the same command resumes", file=sys.stderr, flush=True)
        return EXIT_CTRL_C
    except Exception as e:
        print(crash_line(e, log_dir, args.debug), file=sys.stderr, flush=True)
        return EXIT_FAILED


def _accelerate(args: argparse.Namespace, cfg: E.Config) -> int:
    from accelerate import Accelerator

    from suite.tracking import wandb_mode

    mode = wandb_mode(cfg)
    precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.train.precision]
    try:
        accelerator = Accelerator(mixed_precision=precision, log_with="wandb" if mode != "disabled" else None)
    except (ValueError, RuntimeError) as e:
        return _error(f"train.precision={cfg.train.precision}: {str(e).splitlines()[0]}", EXIT_BAD_INPUT)
    try:
        if cfg.train.precision == "fp16" and accelerator.device.type == "cpu":
            # Accelerate would quietly train fp32 while result.json and the run hash say fp16
            raise ConfigError(f"train.precision=fp16: needs a CUDA GPU, but this run is on "
                                f"{accelerator.device.type} (use train.precision=fp32 or bf16)")
        return _run(args, cfg, accelerator)
    finally:
        accelerator.end_training()  # finish trackers, destroy the process group (else gloo aborts at exit)


def _run(args: argparse.Namespace, cfg: E.Config, accelerator) -> int:
    from suite.masks import RankMismatch
    from suite.results import RunLocked
    from suite.trainer import Interrupted, RunFailed, run_experiment
    try:
        check_world_size(accelerator.num_processes)
    except ConfigError as e:  # every process finds it alone; one line is enough
        if os.environ.get("RANK", "0") == "0":
            return _error(str(e), EXIT_BAD_INPUT)
        import time
        time.sleep(3)  # torchrun kills the other ranks when one exits: let rank 0 say why first
        return EXIT_BAD_INPUT
    asked = launcher_processes()
    if asked > accelerator.num_processes == 1:
        print(f"warning: accelerate launch was asked for {asked} processes but started one (world size 1): "
              f"this run trains alone; for {asked} processes add --multi_gpu (on a machine without GPUs also "
              f"ACCELERATE_USE_CPU=1)", file=sys.stderr, flush=True)
    try:
        outcome = run_experiment(cfg, args.out, accelerator, force=args.force, progress=not args.no_progress)
    except ConfigError as e:
        return _error(str(e), EXIT_BAD_INPUT)
    except RunLocked as e:
        return _error(str(e), EXIT_LOCKED)
    except (RunFailed, RankMismatch) as e:
        return _error(f"run failed: {e}", EXIT_FAILED)
    except Interrupted as e:
        if accelerator.is_main_process:
            print(e.line(), file=sys.stderr, flush=True)
        return EXIT_CTRL_C if e.signum == signal.SIGINT else EXIT_INTERRUPTED
    if accelerator.is_main_process:
        if outcome.status == "skipped":
            print(f"already finished (use --force to run again): {outcome.run_dir}", file=sys.stderr)  # launch/sweep.py reads these words
        else:
            r = outcome.result
            from suite.datasets import dataset  # the dataset's own primary metric: accuracy, or loss for text

            score = (f"test loss {r['final_test_loss']:.4f}" if dataset(r["dataset"]).lower_is_better
                     else f"test accuracy {r['final_test_accuracy']:.2f}%")
            print(f"done: {r['method']} {r['model']}/{r['dataset']} seed {r['seed']}: "
                  f"{score} at sparsity {r['achieved_sparsity']:.4f} "
                  f"(target {r['target_sparsity']:.4f}) -> {outcome.run_dir}/result.json", file=sys.stderr)
        print(outcome.run_dir)
    return 0

if __name__ == "__main__":
    sys.exit(main())

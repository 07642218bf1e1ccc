"""Launched by tests/test_ablation.py as one real 2-process gloo job: each ablation kind of one finished
source through the real runner (run_experiment); each rank writes its final masks' fingerprints.

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 tests/ddp_ablation_script.py SOURCE OUT REPORT
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from accelerate import Accelerator  # noqa: E402

from suite.experiment import load_config  # noqa: E402
from suite.masks import count_alive, fingerprint  # noqa: E402
from suite.run import check_world_size  # noqa: E402
from suite.trainer import run_experiment  # noqa: E402

KINDS = ("shuffle", "reinit", "invert")


def main() -> None:
    source, out, report = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    acc = Accelerator()
    check_world_size(acc.num_processes)
    held = {}
    for kind in KINDS:
        cfg = load_config(None, [f"ablate.source={source}", "wandb.mode=disabled"], method=kind)
        outcome = run_experiment(cfg, out, acc, progress=False)
        mask = outcome.runner.masked.mask
        held[kind] = {"mask": fingerprint(mask), "alive": count_alive(mask), "dir": str(outcome.run_dir)}
    (report / f"rank_{acc.process_index}.json").write_text(json.dumps({"world_size": acc.num_processes, "held": held}))


if __name__ == "__main__":
    main()

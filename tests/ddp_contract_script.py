"""Launched by tests/test_method_contract.py as one real 2-process job: every registered method
through the real runner with its hooks checked; each rank writes its final masks' fingerprints."""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from accelerate import Accelerator  # noqa: E402

from method_contract import run_checked  # noqa: E402
from suite.masks import fingerprint  # noqa: E402
from suite.methods import METHODS  # noqa: E402
from suite.run import check_world_size  # noqa: E402


def main() -> None:
    out, report = Path(sys.argv[1]), Path(sys.argv[2])
    acc = Accelerator()
    check_world_size(acc.num_processes)
    held = {}
    for name in METHODS:
        runner, result = run_checked(name, out, acc)
        held[name] = {"mask": fingerprint(runner.masked.mask), "zeros": result["prunable_total"] - result["prunable_remaining"],
                      "returned": runner.method.returned}
    (report / f"rank_{acc.process_index}.json").write_text(json.dumps({"world_size": acc.num_processes, "held": held}))


if __name__ == "__main__":
    main()

"""Launched by tests/test_ddp.py: the ranks compute different masks on purpose; synchronise must stop
every rank with RankMismatch, and agree when the masks are equal."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from suite.masks import RankMismatch, synchronise  # noqa: E402


def main() -> None:
    report = Path(sys.argv[1])
    acc = Accelerator(cpu=True)
    rank = acc.process_index
    same = {"w": torch.tensor([True, False, True, True])}
    agreed = synchronise(same, acc.device)
    differs = {"w": torch.tensor([True, False, True, rank == 0])}
    try:
        synchronise(differs, acc.device)
        outcome = "no error"
    except RankMismatch as e:
        outcome = str(e)
    (report / f"rank_{rank}.json").write_text(json.dumps({"agreed": agreed["w"].tolist(), "outcome": outcome}))
    acc.end_training()  # destroy the process group, or gloo aborts the process at exit


if __name__ == "__main__":
    main()

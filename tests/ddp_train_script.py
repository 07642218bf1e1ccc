"""Launched by tests/test_ddp.py as a real 2-process job: train through the real runner, then write
what this rank holds (mask and weight digests) so the test can compare ranks."""
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelerate import Accelerator  # noqa: E402

from suite import experiment as E  # noqa: E402
from suite.masks import fingerprint  # noqa: E402
from suite.run import check_world_size  # noqa: E402
from suite.trainer import run_experiment  # noqa: E402


def digest(state: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    """argv: OUT REPORT_DIR [--methods a,b,...] key=value ...; one report file per method and rank."""
    out, report, rest = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    methods = [None]
    if rest[:1] == ["--methods"]:
        methods, rest = rest[1].split(","), rest[2:]
    acc = Accelerator(log_with="wandb")
    check_world_size(acc.num_processes)
    for method in methods:
        cfg = E.load_config(None, rest, method)
        runner = run_experiment(cfg, out, acc, progress=False).runner
        prefix = f"{method}_" if method else ""
        (report / f"{prefix}rank_{acc.process_index}.json").write_text(json.dumps({
            "world_size": acc.num_processes,
            "mask": fingerprint(runner.masked.mask),
            "weights": digest(runner.model.state_dict()),
            "zeros": {n: int((w == 0).sum()) for n, w in runner.weights.items()},
        }))


if __name__ == "__main__":
    main()

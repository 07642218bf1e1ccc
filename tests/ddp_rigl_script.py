"""Run by tests/test_rigl.py as a real 2-process CPU job:

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no tests/ddp_rigl_script.py OUT_DIR

Each rank forwards its shard of one fixed batch through a DDP-wrapped sparse MLP, takes the dense
gradients DDP leaves after backward (averaged over ranks), and runs one RigL and one SET update;
it writes the masks and gradients to OUT_DIR/rank<r>.safetensors. The test compares the ranks with
each other and with one process on the whole batch."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from baselines.rigl import rigl_update  # noqa: E402
from baselines.set import regrowth_seed, set_update  # noqa: E402

WORLD = 2
DROP_FRACTION = 0.3


def fixed_problem():
    """The same sparse MLP (dead weights exactly 0), mask and batch of 16 examples in every process."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 4))
    g = torch.Generator().manual_seed(1)
    mask = {"0.weight": torch.rand(20, 12, generator=g) < 0.3, "2.weight": torch.rand(4, 20, generator=g) < 0.5}
    with torch.no_grad():
        model[0].weight.mul_(mask["0.weight"])
        model[2].weight.mul_(mask["2.weight"])
    x = torch.randn(16, 12, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    return model, mask, x, y


def updates(model, mask, grads):
    weights = {"0.weight": model[0].weight, "2.weight": model[2].weight}
    rigl = rigl_update(weights, grads, mask, DROP_FRACTION)
    set_mask = set_update(weights, mask, DROP_FRACTION, torch.Generator().manual_seed(regrowth_seed(42, 0, 1)))
    return rigl, set_mask


def single_process():
    """One process, the whole batch: the reference."""
    model, mask, x, y = fixed_problem()
    F.cross_entropy(model(x), y).backward()
    grads = {"0.weight": model[0].weight.grad, "2.weight": model[2].weight.grad}
    return (*updates(model, mask, grads), grads)


def main(out_dir: str) -> None:
    from accelerate import Accelerator
    from safetensors.torch import save_file

    accelerator = Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    assert world == WORLD, f"expected {WORLD} processes, got {world}"
    model, mask, x, y = fixed_problem()
    ddp = accelerator.prepare(model)
    # each rank its half of the batch; DDP averages the gradients, so they are the whole batch's mean
    F.cross_entropy(ddp(x[rank::world]), y[rank::world]).backward()
    grads = {"0.weight": model[0].weight.grad, "2.weight": model[2].weight.grad}
    rigl, set_mask = updates(model, mask, grads)
    flat = {**{f"rigl/{k}": v for k, v in rigl.items()}, **{f"set/{k}": v for k, v in set_mask.items()},
            **{f"grad/{k}": v.contiguous() for k, v in grads.items()}}
    save_file(flat, str(Path(out_dir) / f"rank{rank}.safetensors"))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])

"""Run by tests/test_baselines_ddp.py as a real 2-process CPU job:

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no tests/ddp_scores_script.py OUT_DIR

Each rank scores its shard of fixed batches (scores all-reduced over ranks), runs the SNIP and GraSP
methods through a real Context on the synthetic dataset, and writes everything to
OUT_DIR/rank<r>.safetensors; the test compares with one process on the union of the shards."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from baselines.grasp import Grasp, grasp_scores  # noqa: E402
from baselines.snip import Snip, snip_scores  # noqa: E402
from suite.experiment import load_config  # noqa: E402
from suite.datasets import build_data  # noqa: E402
from suite.masks import full_mask, prunable_weights  # noqa: E402
from suite.selection import select  # noqa: E402
from suite.methods import Context  # noqa: E402
from suite.models import build_model  # noqa: E402

WORLD = 2
TEMPERATURE = 5.0  # not 200: keeps the Hessian term far from float32 round-off in a tiny net
METHOD_OVERRIDES = ["data.name=synthetic", "model.name=tiny_cnn", "train.batch_size=64",
                    "prune.target_sparsity=0.8", "snip.batches=2", "grasp.samples_per_class=5"]


class SmallNet(nn.Module):
    """Conv + BatchNorm + Linear: BatchNorm makes the train/eval modes differ."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 4)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def fixed_problem() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The same model and 4 batches (of 6, 5, 6, 3 examples) in every process."""
    torch.manual_seed(0)
    model = SmallNet()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 2, 4, 4, generator=g), torch.randint(0, 4, (n,), generator=g)) for n in (6, 5, 6, 3)]
    return model, batches


def score_all(model, batches, all_reduce=None) -> dict[str, dict[str, torch.Tensor]]:
    """Every scoring variant the DDP test checks."""
    return {
        "snip_eval": snip_scores(model, batches, all_reduce=all_reduce),
        "snip_train": snip_scores(model, batches, bn_mode="train", all_reduce=all_reduce),
        "grasp_train": grasp_scores(model, batches, temperature=TEMPERATURE, all_reduce=all_reduce),
        "grasp_eval": grasp_scores(model, batches, temperature=TEMPERATURE, bn_mode="eval", all_reduce=all_reduce),
    }


def method_setup(method: str, rank: int, world: int, extra: list[str] = ()):
    """A real Context for a method on the synthetic dataset, as the runner builds it."""
    cfg = load_config(None, METHOD_OVERRIDES + list(extra), method=method)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size, seed=cfg.seed, rank=rank, world_size=world)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, data.spec)
    weights = prunable_weights(model)
    ctx = Context(cfg=cfg, model=model, weights=weights, data=data, loss_fn=F.cross_entropy,
                  device=torch.device("cpu"), epochs=cfg.train.epochs, steps_per_epoch=data.steps_per_epoch,
                  rank=rank, world_size=world)
    return cfg, ctx


def method_masks(rank: int, world: int) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for key, method, cls, extra in (("snip", "snip", Snip, []), ("grasp_train", "grasp", Grasp, []),
                                    ("grasp_eval", "grasp", Grasp, ["grasp.bn_mode=eval"])):
        cfg, ctx = method_setup(method, rank, world, extra)
        chosen, mask = cls(cfg), full_mask(ctx.weights)
        out[f"method_{key}"] = select(chosen, ctx, mask, chosen.start_round(0, ctx, mask))
    return out


def main(out_dir: str) -> None:
    from accelerate import Accelerator
    from safetensors.torch import save_file

    accelerator = Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    assert world == WORLD, f"expected {WORLD} processes, got {world}"
    model, batches = fixed_problem()
    cfg, ctx = method_setup("snip", rank, world)  # only for its all_reduce_sum, the runner's collective
    results = score_all(model, batches[rank::world], all_reduce=ctx.all_reduce_sum)
    results.update(method_masks(rank, world))
    flat = {f"{kind}/{name}": t.contiguous() for kind, d in results.items() for name, t in d.items()}
    save_file(flat, str(Path(out_dir) / f"rank{rank}.safetensors"))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])

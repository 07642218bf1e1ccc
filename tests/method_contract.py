"""The mask contract every registered method keeps, checked at each hook call of a real run.

`Checked(method)` stands in for the method inside the real Runner: every hook is called twice on
the same inputs (a method keeps no state of its own, so both calls must agree), and each mask it
stands for (a returned mask, or a `Prune` through the shared selection) is checked: the same keys,
shapes and dtype bool as the mask in force, that mask untouched, no revived weight unless the method
declares `regrows`."""
from __future__ import annotations

from pathlib import Path

import torch

from suite import experiment as E
from suite.masks import Mask
from suite.methods import Context, method_class
from suite.results import RunFolder
from suite.selection import select

# a run of every method on the tiny synthetic data: 3 epochs, 8 steps each
CONTRACT_RUN = ["data.name=synthetic", "model.name=tiny_mlp", "train.epochs=3", "train.batch_size=64",
                "train.lr=0.05", "prune.target_sparsity=0.8", "wandb.mode=disabled"]
# settings a method needs to fit a 3-epoch run (applied only while that method is registered)
FITS_TINY_RUN = {
    "progressive": ["prune.t_end=2"],
    "gmp": ["prune.t_end=2", "prune.update_every_steps=4"],
    "oneshot": ["oneshot.dense_epochs=1"],
    "rigl": ["rigl.update_every=4"],
    "synflow": ["synflow.iterations=10"],
}


# an ablation (shuffle, reinit, invert) ablates the contract run of this method, in the same runs
# folder: SNIP scores weights at init, so every kind applies to it
ABLATION_SOURCE = "snip"


def contract_config(name: str, out=None, processes: int = 1) -> E.Config:
    extra = list(FITS_TINY_RUN.get(name, []))
    if method_class(name).ablates:
        if out is None:
            raise ValueError(f"{name} ablates a finished run: give the runs folder that holds its source")
        extra.append(f"ablate.source={source_dir(out, processes)}")
    # the process count is science (in the hash): the folder of an N-process run says so
    return E.with_processes(E.load_config(None, [*CONTRACT_RUN, *extra], method=name), processes)


def source_dir(out, processes: int = 1) -> Path:
    """Where the ablations' source run (ABLATION_SOURCE's contract run) lives under `out`."""
    return E.run_dir(contract_config(ABLATION_SOURCE, processes=processes), out)


class ContractBroken(AssertionError):
    pass


def _same(a: Mask, b: Mask) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n].cpu(), b[n].cpu()) for n in a)


class Checked:
    """A registered method with every hook call checked against the contract."""

    def __init__(self, inner):
        self.inner = inner
        self.returned = 0  # masks the method returned

    def __getattr__(self, name):  # rounds(), step_interval(), regrows, ... come from the method
        return getattr(self.inner, name)

    def _call(self, hook: str, mask: Mask, *args) -> Mask | None:
        before = {n: m.clone() for n, m in mask.items()}
        ctx = next(a for a in args if isinstance(a, Context))
        first = select(self.inner, ctx, mask, getattr(self.inner, hook)(*args))
        if not _same(mask, before):
            raise ContractBroken(f"{self.inner.name}.{hook} edited the mask it was given")
        second = select(self.inner, ctx, mask, getattr(self.inner, hook)(*args))
        if (first is None) != (second is None) or (first is not None and not _same(first, second)):
            raise ContractBroken(f"{self.inner.name}.{hook}: two calls on the same inputs disagree")
        if first is None:
            return None
        if first.keys() != mask.keys():
            raise ContractBroken(f"{self.inner.name}.{hook} returned keys {sorted(first)}, not {sorted(mask)}")
        for n, m in first.items():
            if m.shape != mask[n].shape or m.dtype != torch.bool:
                raise ContractBroken(f"{self.inner.name}.{hook}: {n} is {m.dtype} {tuple(m.shape)}, "
                                     f"not bool {tuple(mask[n].shape)}")
            if not self.inner.regrows and bool((m.cpu() & ~mask[n].cpu()).any()):
                raise ContractBroken(f"{self.inner.name}.{hook} revived {n} weights but regrows is False")
        self.returned += 1
        return first

    def start_round(self, r, ctx, mask):
        return self._call("start_round", mask, r, ctx, mask)

    def after_backward(self, r, t, ctx, mask, grads):
        return self._call("after_backward", mask, r, t, ctx, mask, grads)

    def after_step(self, r, t, ctx, mask):
        return self._call("after_step", mask, r, t, ctx, mask)

    def end_epoch(self, r, epoch, ctx, mask):
        return self._call("end_epoch", mask, r, epoch, ctx, mask)

    def end_round(self, r, ctx, mask):
        return self._call("end_round", mask, r, ctx, mask)


def run_checked(name: str, out, accelerator):
    """Train `name` through the real Runner with its hooks checked; the runner and its result."""
    from suite.trainer import Runner
    if method_class(name).ablates:
        accelerator.wait_for_everyone()  # every rank sees the source as the main process left it
        if not RunFolder(source_dir(out, accelerator.num_processes)).finished():
            run_checked(ABLATION_SOURCE, out, accelerator)
            accelerator.wait_for_everyone()
    cfg = contract_config(name, out, accelerator.num_processes)
    runner = Runner(cfg, E.run_dir(cfg, out), accelerator)
    runner.method = Checked(runner.method)
    return runner, runner.run(progress=False)

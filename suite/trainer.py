"""The one training loop and the runner around it: rounds, rewinding, ranks, checkpoints and the disk.

A method only decides which weights live (suite.methods); this file never asks which method runs."""
from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from suite import config as C
from suite import experiment as E
from suite.errors import ConfigError
from suite import flops as FL
from suite import masks as M
from suite import tracking as T
from suite.datasets import build_data, dataset
from suite.methods import Context, Prune, budgeted_method, method_class, method_kind
from suite.models import build_model, resolve_init
from suite.provenance import code_version, cpu_name
from suite.results import (BadCheckpoint, InvalidResult, RunFolder, RunLock, RunLocked, check_exact_count,
                           load_resumable, save_checkpoint, save_predictions, save_tensors, write_json, write_jsonl)
from suite.schedules import learning_rate
from suite.selection import select
from suite.threads import choose_threads, threads_line

SUITE_VERSION = "0.1.0"


class RunFailed(RuntimeError):
    """The run cannot go on (NaN loss, ...); the reason goes to failed.json."""


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C (SIGINT): stop now; the checkpoint of the last finished epoch is on disk."""

    def __init__(self, signum: int = signal.SIGTERM, at: tuple[int, int, int] | None = None):
        super().__init__(signum, at)
        self.signum = signum
        self.at = at  # (round, epoch the same command resumes at, from 1, rounds); None while starting up

    def line(self) -> str:
        """What the terminal shows: one line, where the run stopped and how to go on."""
        if self.at is None:
            return STARTING_UP
        r, epoch, rounds = self.at
        where = f"round {r} epoch {epoch}" if rounds > 1 else f"epoch {epoch}"
        return f"interrupted at {where}; the same command resumes"


@dataclass
class Outcome:
    status: str          # finished | skipped
    run_dir: Path
    result: dict | None
    runner: "Runner | None" = None  # the trained model and mask, for programmatic use


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STARTING_UP = "interrupted while starting up; the same command resumes"


def _on_stop_signal(signum, frame):
    # the first SIGTERM or Ctrl-C stops the run; a second one (SLURM and launchers may send two in quick
    # succession, a user presses Ctrl-C twice) must not break the orderly stop into a traceback, nor kill
    # the process once the handlers are restored
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def _log(accelerator, text: str) -> None:
    if accelerator.is_main_process:
        print(text, file=sys.stderr, flush=True)


def build_optimizer(cfg: C.TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD, Adam, or AdamW with decoupled weight decay on the tensors of two or more dimensions only
    (matrices, convolutions and embeddings decay; biases and norm gains do not), as nanoGPT groups them."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas))


def _reduce_sum(values: Tensor) -> Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
    return values


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn, accelerator, split: str = "test") -> tuple[float, float]:
    """Loss and accuracy (percent) over the whole test (or validation) split, each example counted
    once across ranks. Runs the unwrapped model: ranks may hold shards of different length, and
    DDP's forward would then wait for a peer that has none."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # loss sum, correct, count
    with accelerator.autocast():
        for x, y in (data.val_batches() if split == "val" else data.test_batches()):
            out = model(x)
            sums[0] += loss_fn(out.float(), y, reduction="sum")
            sums[1] += (out.argmax(1) == y).sum()
            sums[2] += y.numel()
    loss_sum, correct, count = _reduce_sum(sums).tolist()
    model.train(was_training)
    return loss_sum / count, 100.0 * correct / count


PREDICTIONS_FILE = "predictions.npy"  # per test example: row 0 the predicted class, row 1 the label (uint8)


@torch.no_grad()
def test_predictions(model: nn.Module, data, accelerator) -> Tensor | None:
    """Per test example, in the test set's order, the predicted class and the label: a (2, n) uint8
    tensor on the CPU, gathered over ranks (each rank fills its own disjoint positions, then one sum);
    None when a class index does not fit a byte. Per-example predictions back a paired McNemar test."""
    n, classes = data.spec.n_test, data.spec.num_classes
    if classes > 256:
        return None
    was_training = model.training
    model.eval()
    full = torch.zeros(2, n, dtype=torch.int64, device=accelerator.device)
    with accelerator.autocast():
        for idx, (x, y) in zip(data.test_plan(), data.test_batches()):
            if y.dim() != 1:  # a target per position (text windows): no one class per example to pair
                model.train(was_training)
                return None
            idx = idx.to(accelerator.device)
            full[0, idx] = model(x).argmax(1)
            full[1, idx] = y
    model.train(was_training)
    return _reduce_sum(full).to(torch.uint8).cpu()


def live_per_class(model: nn.Module, mask: M.Mask) -> tuple[str, list[int]]:
    """The model's output layer and, per class (its rows), how many of its weights are alive: the
    collapse diagnostic of a random draw in the classifier (a kept-dense layer counts every weight)."""
    # the last Conv/Linear layer: a model's classifier (or a GPT's head), prunable or not
    name, weight = [(f"{n}.weight" if n else "weight", m.weight) for n, m in model.named_modules()
                    if isinstance(m, M.PRUNABLE_TYPES)][-1]
    rows = M.rows_of(mask[name]) if name in mask else torch.ones(M.rows_of(weight).shape, dtype=torch.bool)
    return name, [int(v) for v in torch.count_nonzero(rows, dim=1).tolist()]


class Runner:
    """Runs one configured experiment in one run folder, resuming from its checkpoint."""

    def __init__(self, cfg: E.Config, run_dir: Path, accelerator):
        cfg = E.with_processes(cfg, accelerator.num_processes)
        self.cfg, self.dir, self.acc = cfg, Path(run_dir), accelerator
        self.device = accelerator.device
        self.loss_fn = F.cross_entropy
        self.data = build_data(cfg.data, batch_size=cfg.train.batch_size, seed=cfg.seed,
                               rank=accelerator.process_index, world_size=accelerator.num_processes,
                               device=self.device)
        if self.data.steps_per_epoch < 1:
            raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is larger than the training set "
                                f"({self.data.spec.n_train} examples)")
        self.method = budgeted_method(cfg, self.data.steps_per_epoch)
        self.budget = self.method.budget  # one round's optimizer steps
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest conv kernels once
        torch.manual_seed(self.method.init_seed())  # the init is seeded, and the same on every rank
        self.model = build_model(cfg.model.name, self.data.spec, cfg.model.init, cfg.model).to(self.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.weights = M.prunable_weights(self.model, cfg.prune.keep_first_dense, cfg.prune.keep_last_dense,
                                          cfg.prune.include)
        if not self.weights:
            raise ConfigError("prune.keep_first_dense/keep_last_dense leave no prunable layer")
        self.masked = M.MaskedWeights(self.weights)
        # dense forward FLOPs per example, counted once; a step's cost follows the mask's densities
        self.flops = FL.count_model_flops(self.model, self.weights, self.data.spec.input_shape, self.device)
        self.threads, self.threads_why = choose_threads(
            self.device.type, self.flops.total, int(os.environ.get("LOCAL_WORLD_SIZE") or accelerator.num_processes))
        torch.set_num_threads(self.threads)  # before the first step; recorded in result.json
        self.densities = {n: 1.0 for n in self.weights}
        self.step_flops = self.flops.train_step(self.densities)  # per example, under the current mask
        self.train_flops = 0.0  # every step run so far, all rounds, all examples, plus scoring
        self.scoring_flops = 0.0  # the FLOPs of the methods' own passes (SNIP, GraSP, SynFlow scoring)
        self.train_model = accelerator.prepare(self.model)
        if cfg.train.compile:
            self.train_model = torch.compile(self.train_model)
        self.ctx = Context(cfg=cfg, model=self.model, weights=self.weights, data=self.data,
                           loss_fn=self.loss_fn, device=self.device, epochs=self.budget.epochs_started,
                           steps_per_epoch=self.data.steps_per_epoch, budget=self.budget,
                           rank=accelerator.process_index, world_size=accelerator.num_processes)
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # what clipping sees
        self.rewind_weights: dict | None = None  # round 0's weights at the rewinding step (chains only)
        self.predictions: Tensor | None = None  # the last round's per-example test predictions
        self.optimizer = None
        self.threshold = float("nan")
        self.collapsed: list[str] = []  # layers already reported as pruned to zero weights
        self.code = code_version()  # the code this process runs, read once: every round's result says the same
        self.lock: RunLock | None = None  # the main process's lock on the folder, checked before each write
        self.at: tuple[int, int, int] | None = None  # (round, epoch a rerun starts, rounds), for a stop
        self.bar = None  # the progress bar: closed on a stop, so the stop's line starts a line of its own

    # --- state ---------------------------------------------------------------------------------

    def new_optimizer(self) -> None:
        """A fresh optimizer over the model (zero state), prepared for this process group."""
        self.optimizer = self.acc.prepare(build_optimizer(self.cfg.train, self.model))

    def _install(self, change: M.Mask | Prune | None) -> bool:
        """Adopt a method's new mask (a `Prune` selected by the shared step) on every rank; False when
        the method kept the mask. Weights whose mask changed restart from 0 with zero optimizer state
        (MaskedWeights.install)."""
        mask = select(self.method, self.ctx, self.masked.mask, change)
        if mask is None:
            return False
        mask = M.synchronise(mask, self.device)
        if not self.method.regrows:
            revived = M.count_revived(self.masked.mask, mask)
            if revived:
                raise RunFailed(f"method '{self.cfg.method}' declares regrows = False but its new mask "
                                f"revives {revived} pruned weights")
        self.masked.install(mask, self.optimizer)
        self._count_densities()
        self.threshold = M.smallest_alive_magnitude(self.weights, self.masked.mask)
        for name, m in self.masked.mask.items():
            if name not in self.collapsed and not bool(m.any()):
                self.collapsed.append(name)
                _log(self.acc, f"warning: layer {name} is pruned to zero weights (layer collapse)")
        return True

    def _scored(self, hook, *args) -> M.Mask | None:
        """Run a method hook outside the training steps, adding the FLOPs of any passes it makes
        (SNIP's, GraSP's and SynFlow's scoring) to the run's cost, summed over ranks (what was spent:
        a data-free score computed on every rank costs once per rank)."""
        with FL.counter() as counter:
            mask = select(self.method, self.ctx, self.masked.mask, hook(*args))  # scoring happens here
        spent = _reduce_sum(torch.tensor([float(counter.get_total_flops())], dtype=torch.float64,
                                         device=self.device)).item()
        self.scoring_flops += spent
        self.train_flops += spent
        return mask

    def _count_densities(self) -> None:
        """The mask's per-layer densities and the FLOPs of one training example under it."""
        self.densities = FL.densities(self.masked.mask)
        self.step_flops = self.flops.train_step(self.densities)

    def _grads(self) -> dict[str, Tensor]:
        """The prunable weights' current gradients (zeros for a weight the loss did not reach)."""
        return {n: w.grad if w.grad is not None else torch.zeros_like(w) for n, w in self.weights.items()}

    def _still_ours(self) -> None:
        """Before writing: the folder is still the one this process locked (else RunLost)."""
        if self.lock is not None:
            self.lock.check()

    def _resumes_at(self, state: dict) -> None:
        """Where the same command would go on from: the epoch after the last one checkpointed."""
        self.at = (state["round"], min(state["epoch"] + 1, self.budget.epochs_started), self.method.rounds())

    def _checkpoint(self, state: dict) -> None:
        self._resumes_at(state)
        if self.acc.is_main_process:
            self._still_ours()
            save_checkpoint(self.dir / "checkpoint.pt", {
                **state,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "mask": self.masked.mask,
                "threshold": self.threshold,
                "rng": torch.get_rng_state(),
                "experiment": E.experiment_hash(self.cfg), "seed": self.cfg.seed,  # refuse another run's file
            })

    def _check_saved(self, saved: dict) -> None:
        """A checkpoint's tensors fit this model and mask (else BadCheckpoint, before anything is loaded)."""
        for what, ours, theirs in (("model", self.model.state_dict(), saved["model"]),
                                   ("mask", {n: w for n, w in self.weights.items()}, saved["mask"])):
            if not isinstance(theirs, dict) or set(theirs) != set(ours):
                raise BadCheckpoint(f"its {what} has other tensors than this run's")
            bad = [n for n in ours if tuple(theirs[n].shape) != tuple(ours[n].shape)]
            if bad:
                raise BadCheckpoint(f"its {what} tensor {bad[0]} has shape {tuple(theirs[bad[0]].shape)}, "
                                    f"not {tuple(ours[bad[0]].shape)}")
        # a mask of another dtype (0.5 floats) would load as all-True: a dense run under a pruned name
        wrong = [n for n, m in saved["mask"].items() if m.dtype != torch.bool]
        if wrong:
            raise BadCheckpoint(f"its mask {wrong[0]} is {saved['mask'][wrong[0]].dtype}, not bool")
        try:
            records = json.loads(saved["records"])
            last = records[-1] if records else None
        except (TypeError, ValueError, AttributeError, KeyError):
            raise BadCheckpoint("its epoch records are not JSON") from None
        if (saved["round_started"] and isinstance(last, dict) and (last.get("round"), last.get("epoch")) ==
                (saved["round"], saved["epoch"])):
            alive = M.count_alive(saved["mask"])
            if alive != last.get("prunable_remaining"):
                raise BadCheckpoint(f"its mask keeps {alive} weights, but its last epoch recorded "
                                    f"{last.get('prunable_remaining')}")

    def _broadcast_buffers(self) -> None:
        """BatchNorm statistics as the main process has them, on every rank. DDP broadcasts them at
        the start of each forward, so after an epoch's last step each rank holds its own shard's
        statistics; evaluation, checkpoints and LTH rewinding need one set."""
        if self.acc.num_processes > 1:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    # --- the loop ------------------------------------------------------------------------------

    def train_epoch(self, round_index: int, epoch: int, first: int = 0) -> dict:
        """Train this rank's shard of epoch `epoch` (0-based): the round's optimizer steps that fall in
        it, from step `first` on (a later LTH round starts at its rewinding step); its train metrics."""
        steps = self.budget.epoch_steps(epoch, first)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss sum, correct, count, grad norms
        self.train_model.train()
        start = time.perf_counter()
        batches = itertools.islice(self.data.train_batches(epoch), steps.start - epoch * self.budget.steps_per_epoch,
                                   None)  # a round that starts inside an epoch skips that epoch's first batches
        flops, lr = 0.0, float("nan")
        for part in self._parts(round_index, steps):
            part_flops, lr = self._train_steps(round_index, epoch, part, batches, sums)
            flops += part_flops
            if part.stop == self._rewind_kept_at(round_index):
                self._broadcast_buffers()
                self.rewind_weights = copy.deepcopy(self.model.state_dict())  # late rewinding point
        self.train_flops += flops * self.data.local_batch_size * self.acc.num_processes  # the global batch
        loss_sum, correct, count, norms = _reduce_sum(sums).tolist()
        self._broadcast_buffers()
        seconds = time.perf_counter() - start
        train_loss = loss_sum / count
        if not math.isfinite(train_loss):
            raise RunFailed(f"training loss became {train_loss} in round {round_index} epoch {epoch + 1} "
                            f"(lr {lr:g}): the run diverged")
        metrics = {"train_loss": train_loss, "train_accuracy": 100.0 * correct / count, "lr": lr,
                   "steps": len(steps), "epoch_time_s": seconds, "examples_per_s": count / seconds}
        if self.cfg.train.grad_clip:  # the mean over the epoch's steps of the norm before clipping
            metrics["grad_norm"] = norms / self.acc.num_processes / len(steps)
        return metrics

    def _rewind_kept_at(self, round_index: int) -> int | None:
        """The step of round 0 after which the weights are kept for rewinding (None: not this round,
        or the initialisation, kept when the round starts)."""
        k = self.method.rewind_step()
        return k if round_index == 0 and k > 0 and self.method.rounds() > 1 else None

    def _parts(self, round_index: int, steps: range) -> list[range]:
        """`steps` cut at the rewinding step, where the weights are kept mid-epoch."""
        k = self._rewind_kept_at(round_index)
        return [range(steps.start, k), range(k, steps.stop)] if k is not None and steps.start < k < steps.stop \
            else [steps]

    def _step_functions(self):
        """backward, optimizer step and zero_grad: Accelerate's only when they add loss scaling (fp16),
        since they cost ~0.4 ms of Python per step (its optimizer step probes importlib every call)."""
        opt = self.optimizer
        if self.acc.scaler is None:
            return Tensor.backward, opt.optimizer.step, opt.optimizer.zero_grad
        return self.acc.backward, opt.step, opt.zero_grad

    def _train_steps(self, round_index: int, epoch: int, steps: range, batches, sums: Tensor) -> tuple[float, float]:
        """Run the round's optimizer steps `steps` (0-based) of epoch `epoch` on the next `batches`,
        adding to `sums`; (their FLOPs per example, the last step's learning rate)."""
        cfg, model, opt, masked, method = self.cfg, self.train_model, self.optimizer, self.masked, self.method
        interval, spe, clip = method.step_interval(), self.budget.steps_per_epoch, cfg.train.grad_clip
        # the learning rates, worked out before the steps: no Python maths between them
        lrs = [learning_rate(cfg.train, *method.lr_at(round_index, g), spe) for g in steps]
        backward, optimizer_step, zero_grad = self._step_functions()
        # FLOPs per example: summed at mask changes only (steps since the last change x their cost)
        flops, accounted, lr = 0.0, steps.start, None
        for g, step_lr, (x, y) in zip(steps, lrs, batches):
            if step_lr != lr:
                lr = step_lr
                for group in opt.param_groups:
                    group["lr"] = lr
            masked.apply_to_weights()
            out = model(x)
            loss = self.loss_fn(out, y)
            backward(loss)
            hook = interval and (g + 1) % interval == 0  # hook steps are counted over the round
            if hook:  # the dense gradients, averaged over ranks, before they are masked
                t = epoch + (g + 1 - epoch * spe) / spe
                grown = method.after_backward(round_index, t, self.ctx, masked.mask, self._grads())
            masked.apply_to_grads()
            if clip:  # after the mask: pruned weights have zero gradient and add nothing to the norm
                sums[3] += self.acc.clip_grad_norm_(self.params, clip).detach()
            optimizer_step()
            zero_grad(set_to_none=True)
            masked.apply_to_weights()  # momentum and weight decay would otherwise revive pruned weights
            sums[0] += loss.detach() * y.numel()
            sums[1] += (out.detach().argmax(1) == y).sum()
            sums[2] += y.numel()
            if hook:
                cost = self.step_flops
                if method.dense_grads and grown is not None:  # a mask update read the dense weight gradient
                    flops += self.flops.train_step(self.densities, dense_grads=True) - cost
                changed = self._install(grown)  # after the step it was computed in, under the old mask
                changed |= self._install(method.after_step(round_index, t, self.ctx, masked.mask))
                if changed:
                    flops, accounted = flops + cost * (g + 1 - accounted), g + 1
        return flops + self.step_flops * (steps.stop - accounted), lr

    def run(self, progress: bool = True) -> dict:
        """Train every round of the experiment from its checkpoint (or the start); the final result."""
        started = time.time()
        state, records = self._resume()
        rounds = self.method.rounds()
        for r in range(state["round"], rounds):
            if not state["round_started"]:
                self._start_round(r, state)
            bar = self.bar = _progress(self.acc, progress, self._first_step(r) // self.budget.steps_per_epoch,
                            self.budget.epochs_started, state["epoch"], f"round {r}" if rounds > 1 else "")
            for epoch in range(state["epoch"], self.budget.epochs_started):
                record = self._run_epoch(r, epoch, state, records)
                state["wall_time_s"] += time.time() - started
                started = time.time()
                self._checkpoint(state)
                if self.acc.is_main_process:
                    write_jsonl(self.dir / "metrics.jsonl", records)
                T.log_epoch(self.acc, record, len(records))
                _advance(bar, record)
            if bar is not None:
                bar.close()
            result = self._end_round(r, records, state)
        result["wall_time_s"] = state["wall_time_s"] + time.time() - started
        result["core_hours"] = result["wall_time_s"] * result["threads"] * result["world_size"] / 3600
        self._write_final(records, result)
        return result

    def _first_step(self, round_index: int) -> int:
        """The round's first optimizer step: 0, or the rewinding step for the rounds after the first."""
        return 0 if round_index == 0 else self.method.rewind_step()

    def _resume(self) -> tuple[dict, list[dict]]:
        """A fresh optimizer and the loop's state: the checkpoint's if there is one (its model, optimizer,
        mask and random state loaded), else the start's; and the epoch records so far."""
        acc, cfg = self.acc, self.cfg
        state = {"round": 0, "epoch": 0, "round_started": False, "records": "[]",
                 "rewind": {}, "epochs_trained": 0, "wall_time_s": 0.0}
        self.new_optimizer()
        expect = {"experiment": E.experiment_hash(cfg), "seed": cfg.seed}
        if acc.is_main_process:  # decides which checkpoint counts (deleting a damaged one) before the others read
            saved, warning = load_resumable(RunFolder(self.dir), self.device, expect, self._check_saved)
        acc.wait_for_everyone()
        if not acc.is_main_process:
            saved, warning = load_resumable(RunFolder(self.dir), self.device, expect, self._check_saved, tidy=False)
        if warning:
            _log(acc, warning)
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.masked.install({n: saved["mask"][n].bool() for n in self.weights})
            self._count_densities()
            self.threshold = float(saved["threshold"])
            torch.set_rng_state(saved["rng"].cpu())
            state = {key: saved[key] for key in state}
            _log(acc, f"resuming {self.dir} at round {state['round']} epoch {state['epoch']}")
        if self.threads_why != "OMP_NUM_THREADS" or acc.num_processes > 1:  # not the user's own setting
            _log(acc, threads_line(self.threads, self.threads_why))  # (accelerate launch sets it for them)
        self._resumes_at(state)
        records = json.loads(state["records"])
        if saved is not None and acc.is_main_process:  # metrics.jsonl as the checkpoint has it: a kill
            write_jsonl(self.dir / "metrics.jsonl", records)  # may have come between their writes
        self.train_flops = records[-1].get("train_flops", 0.0) if records else 0.0  # cumulative per epoch
        self.scoring_flops = records[-1].get("scoring_flops", 0.0) if records else 0.0
        self.rewind_weights = state["rewind"] or None
        return state, records

    def _start_round(self, r: int, state: dict) -> None:
        """Round r > 0 starts from the rewinding weights (the survivors at their values, the others 0)
        with a fresh optimizer (no momentum carried across rounds); round 0 of a chain that rewinds to
        the initialisation keeps it. Then the method's start_round (pruning at init scores here)."""
        if r > 0:
            self.model.load_state_dict(state["rewind"])
            self.masked.apply_to_weights()
            self.new_optimizer()
        elif self._first_step(1) == 0 and self.method.rounds() > 1:
            self.rewind_weights = copy.deepcopy(self.model.state_dict())
            state["rewind"] = self.rewind_weights
        self._install(self._scored(self.method.start_round, r, self.ctx, self.masked.mask))
        state.update(round=r, epoch=self._first_step(r) // self.budget.steps_per_epoch, round_started=True)

    def _run_epoch(self, r: int, epoch: int, state: dict, records: list[dict]) -> dict:
        """Train one epoch, then the method's end_epoch, the evaluation and the epoch's record (appended
        to `records` and the state, which the caller checkpoints)."""
        cfg, acc, method, budget = self.cfg, self.acc, self.method, self.budget
        metrics = self.train_epoch(r, epoch, self._first_step(r))
        if self.rewind_weights is not None:
            state["rewind"] = self.rewind_weights
        self._install(self._scored(method.end_epoch, r, epoch + 1, self.ctx, self.masked.mask))
        last = epoch + 1 == budget.epochs_started
        evaluated = (epoch + 1) % cfg.train.eval_every == 0 or last
        test_loss, test_acc = evaluate(self.model, self.data, self.loss_fn, acc) if evaluated else (None, None)
        val_loss, val_acc = (evaluate(self.model, self.data, self.loss_fn, acc, "val")
                             if evaluated and self.data.spec.n_val else (None, None))
        total, alive = M.count_total(self.masked.mask), M.count_alive(self.masked.mask)
        record = {"round": r, "epoch": epoch + 1, **metrics, "test_loss": test_loss,
                  "test_accuracy": test_acc, "val_loss": val_loss, "val_accuracy": val_acc,
                  "train_flops": self.train_flops, "scoring_flops": self.scoring_flops,
                  "target_sparsity": method.target_at(r, float(budget.end_of(epoch + 1))),
                  "sparsity": (total - alive) / total, "prunable_remaining": alive,
                  "threshold": self.threshold, "layer_sparsity": M.layer_sparsity(self.masked.mask)}
        records.append(record)
        spe = budget.steps_per_epoch
        state.update(epoch=epoch + 1, records=json.dumps(records), epochs_trained=state["epochs_trained"] +
                     (1 if metrics["steps"] == spe else metrics["steps"] / spe))
        return record

    def _end_round(self, r: int, records: list[dict], state: dict) -> dict:
        """The round's result (written to round_<r>/ in a chain); between rounds the method's end_round
        mask and a checkpoint at the next round's start."""
        rounds, acc = self.method.rounds(), self.acc
        round_records = [rec for rec in records if rec["round"] == r]
        result = self._result(r, round_records, state)
        try:  # never a result the suite would not count: "done" with exit 0, then rerun forever
            check_exact_count(result)
        except InvalidResult as e:
            raise RunFailed(f"round {r}'s result is not valid: {e}") from None
        self.predictions = test_predictions(self.model, self.data, acc)  # every rank: one collective sum
        if self.predictions is None:
            result["predictions_file"] = None
        if rounds > 1 and acc.is_main_process:
            if self.predictions is not None:
                save_predictions(self.dir / f"round_{r}" / PREDICTIONS_FILE, self.predictions.numpy())
            write_json(self.dir / f"round_{r}" / "result.json", result)
            write_jsonl(self.dir / f"round_{r}" / "metrics.jsonl", round_records)
            save_tensors(self.dir / f"round_{r}" / "mask.safetensors", self.masked.mask)
        if r + 1 < rounds:
            self._install(self._scored(self.method.end_round, r, self.ctx, self.masked.mask))
            state.update(round=r + 1, epoch=self._first_step(r + 1) // self.budget.steps_per_epoch,
                         round_started=False)
            self._checkpoint(state)
        return result

    def _write_final(self, records: list[dict], result: dict) -> None:
        """The finished run's files, result.json last (the commit point), and no checkpoint."""
        if self.acc.is_main_process:
            self._still_ours()
            save_tensors(self.dir / "mask.safetensors", self.masked.mask)
            save_tensors(self.dir / "model.safetensors", self.model.state_dict())
            if self.predictions is not None:
                save_predictions(self.dir / PREDICTIONS_FILE, self.predictions.numpy())
            if self.method.rounds() > 1 and self.rewind_weights is not None:
                save_tensors(self.dir / "rewind.safetensors", self.rewind_weights)  # for ablations of the chain
            write_jsonl(self.dir / "metrics.jsonl", records)
            write_json(self.dir / "result.json", result)  # the commit point: the run is finished
            RunFolder(self.dir).remove_checkpoints()

    def _result(self, r: int, records: list[dict], state: dict) -> dict:
        cfg, mask = self.cfg, self.masked.mask
        prunable_total, alive = M.count_total(mask), M.count_alive(mask)
        params_total = sum(p.numel() for p in self.model.parameters())
        evaluated = [rec for rec in records if rec["test_accuracy"] is not None]
        # model selection only on the validation split, never on the test set
        validated = [rec for rec in evaluated if rec.get("val_accuracy") is not None]
        chosen = max(validated, key=lambda rec: rec["val_accuracy"]) if validated else None  # first best
        layers = M.layer_sparsity(mask)
        collapsed = [name for name, s in layers.items() if s == 1.0]
        cycle_examples = self.budget.steps * self.data.local_batch_size * self.acc.num_processes
        dense_cycle = 3.0 * self.flops.total * cycle_examples  # one dense training cycle of these settings
        inference = self.flops.forward(FL.densities(mask))  # one example's forward under the final mask
        threads = torch.get_num_threads()
        output_layer, per_class = live_per_class(self.model, mask)
        return {
            "status": "finished", "method": cfg.method, "model": cfg.model.name, "dataset": cfg.data.name,
            "seed": cfg.seed, "experiment": E.experiment_hash(cfg), "science": E.science_settings(cfg),
            "method_kind": method_kind(method_class(cfg.method)), "round": r, "rounds": self.method.rounds(),
            "target_sparsity": self.method.target_at(r, float(self.budget.epochs)),
            "achieved_sparsity": (prunable_total - alive) / prunable_total,
            "init": resolve_init(cfg.model.name, cfg.model.init), "distribution": cfg.prune.distribution,
            "keep_first_dense": cfg.prune.keep_first_dense, "keep_last_dense": cfg.prune.keep_last_dense,
            "val_size": cfg.data.val_size,
            "metric": dataset(cfg.data.name).metric_record(),  # the primary metric and its direction
            "final_test_accuracy": evaluated[-1]["test_accuracy"] if evaluated else None,
            "final_test_loss": evaluated[-1]["test_loss"] if evaluated else None,
            "final_val_accuracy": validated[-1]["val_accuracy"] if validated else None,
            "best_val_accuracy": chosen["val_accuracy"] if chosen else None,
            "best_val_epoch": chosen["epoch"] if chosen else None,
            "test_accuracy_at_best_val": chosen["test_accuracy"] if chosen else None,
            "params_total": params_total, "params_remaining": params_total - (prunable_total - alive),
            "prunable_total": prunable_total, "prunable_remaining": alive,
            "epochs": self.budget.epochs, "total_epochs_trained": state["epochs_trained"],
            "cycles": state["epochs_trained"] / self.budget.epochs,
            "steps": self.budget.steps,  # optimizer steps of one cycle (train.steps, or the epochs')
            **({"rewind_step": self.method.rewind_step()} if self.method.rounds() > 1 else {}),
            "world_size": self.acc.num_processes, "wall_time_s": state["wall_time_s"],
            "threads": threads, "threads_chosen_by": self.threads_why, "core_hours": state["wall_time_s"] * threads * self.acc.num_processes / 3600,
            "device": device_name(self.device),
            "layer_sparsity": layers, "collapsed_layers": collapsed,
            "live_per_class": per_class, "live_per_class_layer": output_layer,
            "predictions_file": PREDICTIONS_FILE if self.data.spec.num_classes <= 256 else None,
            "train_flops": self.train_flops, "scoring_flops": self.scoring_flops,
            "dense_cycle_flops": dense_cycle,
            "train_cost_x_dense_cycle": self.train_flops / dense_cycle if dense_cycle else None,
            "inference_flops": inference,
            "inference_flops_x_dense": inference / self.flops.total,
            "dense_layers": [n for n in M.prunable_weights(self.model, include=cfg.prune.include)
                             if n not in self.weights],
            # what pruning may touch and what stays dense whatever the mask (name -> parameters)
            "prunable_set": {n: w.numel() for n, w in self.weights.items()},
            "dense_set": M.dense_parameters(self.model, self.weights),
            "versions": versions(), "code": self.code, "config": C.to_dict(cfg),
        }


def device_name(device: torch.device) -> str:
    """The training device in words, e.g. "cpu (AMD EPYC 7B13)" or "cuda (NVIDIA H200)"."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    name = cpu_name()
    return f"{device.type} ({name})"


def versions() -> dict:
    import accelerate
    return {"python": platform.python_version(), "torch": torch.__version__,
            "accelerate": accelerate.__version__, "suite": SUITE_VERSION}


def _fmt(value):
    return "-" if value is None else f"{value:.2f}"


def _progress(acc, enabled: bool, first: int, epochs: int, done: int, desc: str):
    if not (enabled and acc.is_main_process):
        return None
    from tqdm import tqdm
    return tqdm(total=epochs - first, initial=done - first, desc=desc or "epochs", unit="epoch",
                file=sys.stderr, dynamic_ncols=True)


def _advance(bar, record: dict) -> None:
    """One epoch more on the progress bar (None: no bar), with its loss, accuracy and sparsity."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=_fmt(record["test_accuracy"]),
                        sparsity=f"{record['sparsity']:.4f}")


def run_experiment(cfg: E.Config, out: str | Path, accelerator, force: bool = False,
                   progress: bool = True) -> Outcome:
    """Run (or resume, or skip) one experiment; the main process writes the run folder."""
    cfg = E.with_processes(cfg, accelerator.num_processes)  # the process count is science: in the hash
    run_dir = E.run_dir(cfg, out)
    folder = RunFolder(run_dir)
    if folder.finished() and not force:
        if accelerator.is_main_process and (folder.has_checkpoint() or (run_dir / ".lock").exists()):
            _clean_finished(folder)  # also a lock file left by a run of an older version
        return Outcome("skipped", run_dir, None)
    with contextlib.ExitStack() as stack:
        lock = _lock_on_main(stack, run_dir, accelerator)
        if accelerator.is_main_process:
            folder.remove_orphans()
            # result.json is the commit point: a run that starts over never mixes with the old files
            fresh = force or (folder.result_path.exists() and not folder.has_checkpoint())
            if fresh:
                moved = folder.move_aside()
                if moved is not None:
                    _log(accelerator, f"moved the previous files of {run_dir} to {moved}")
            (run_dir / "failed.json").unlink(missing_ok=True)
            write_json(run_dir / "config.json", C.to_dict(cfg))
        accelerator.wait_for_everyone()
        mode = T.wandb_mode(cfg)
        if mode != "disabled":
            T.start_tracking(accelerator, cfg, run_dir, mode)
        previous = {s: signal.signal(s, _on_stop_signal) for s in STOP_SIGNALS}
        runner = None
        try:
            runner = Runner(cfg, run_dir, accelerator)
            runner.lock = lock
            result = runner.run(progress=progress)
            if lock is not None:
                lock.remove = True  # finished: the folder keeps its results, not the lock file
            if accelerator.trackers and accelerator.is_main_process:
                T.record_summary(accelerator, cfg, run_dir, result)
        except (RunFailed, M.RankMismatch) as e:
            if accelerator.is_main_process:
                write_json(run_dir / "failed.json", {"status": "failed", "reason": str(e)})
            raise
        except OSError as e:
            if lock is not None:  # the folder went (rm -rf) during a write that began before it did:
                lock.check_error(e)  # RunLost, as at the next write, not an unexpected crash
            raise
        except (Interrupted, KeyboardInterrupt) as e:  # KeyboardInterrupt: a SIGINT before our handler
            signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            if runner is not None and runner.bar is not None:
                runner.bar.close()
            raise Interrupted(signum, runner.at if runner is not None else None) from None
        finally:
            for s, handler in previous.items():
                if signal.getsignal(s) is not signal.SIG_IGN:  # stopping: keep ignoring a second signal
                    signal.signal(s, handler)
            T.finish_tracking(accelerator, run_dir)
    return Outcome("finished", run_dir, result, runner)


def _clean_finished(folder: RunFolder) -> None:
    """A kill after result.json but before the checkpoint was deleted leaves a stale checkpoint (and
    the lock file)."""
    try:
        with RunLock(folder.path) as lock:
            if folder.finished():
                folder.remove_checkpoints()
                folder.remove_orphans()
                lock.remove = True
    except RunLocked:
        pass  # another process is at it (--force): leave its files alone
    except OSError:
        pass  # a read-only folder: the result stands, the stale checkpoint stays


def _lock_on_main(stack: contextlib.ExitStack, run_dir: Path, accelerator) -> RunLock | None:
    """The main process takes the run folder's lock and tells every rank whether it got it; the lock
    (None on the other ranks)."""
    from accelerate.utils import broadcast_object_list
    message, lock = [None], None
    if accelerator.is_main_process:
        try:
            lock = stack.enter_context(RunLock(run_dir))
        except RunLocked as e:
            message = [str(e)]
    if accelerator.num_processes > 1:
        broadcast_object_list(message)
    if message[0] is not None:
        raise RunLocked(message[0])
    return lock

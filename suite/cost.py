"""What a finished run's network costs to run, measured: latency, throughput, peak memory and size
of the saved weights, per deployment format, beside the FLOPs that assume kernels nobody ran.

    python -m suite.cost RUN_FOLDER... [--device cpu|cuda] [--repeats 20] [--warmup 3] [--data-root DIR]

RUN_FOLDER is a finished result's seed folder (`result.json`, `config.json`, `model.safetensors`,
`mask.safetensors`). The network is rebuilt from those files and deployed in each format:

- `dense_masked`: the trained model as it is, pruned weights stored as zeros (dense kernels).
- `compacted`: whole pruned channels physically removed (`prune.structure: channel`): smaller
  Linear/Conv layers, the BatchNorm after them and the next layer's inputs sliced, along the
  model's `channel_chain()`. A pruned channel still outputs a constant (its bias, BatchNorm shift
  and activation of 0); that constant's effect on the next layer is folded into its bias (Linear)
  or into a fixed bias map (Conv: zero padding makes it position-dependent), exact for the input
  size it was measured at. Skipped when no whole channel of a chain layer is pruned.
- `csr`: every prunable Linear weight as a `torch.sparse_csr` tensor (int32 indices) applied with
  `torch.sparse.mm`; Conv layers stay dense-masked.
- `semi_structured_2_4`: every prunable Linear weight as `torch.sparse.to_sparse_semi_structured`
  (fp16, the 2:4 sparse tensor cores), on CUDA with compute capability >= 8.0 and a 2:4 mask only;
  skipped with one line elsewhere.

Each format is checked against the masked model on the whole test set: the max absolute
difference of the logits is recorded with its tolerance (1e-4 x max(1, max |logit|) in fp32,
1e-2 x that in fp16), and a format that misses it is marked `mismatch` and not timed. Latency is the
median over `--repeats` timed forward passes after `--warmup` untimed ones, at batch 1, 32 and 256
(test images, repeated if the test set is smaller), under torch.inference_mode; on CUDA each timing
ends with a synchronisation. Peak memory: on CUDA torch.cuda.max_memory_allocated over one batch-256
forward (weights included); on the CPU the peak RSS growth over one batch-256 forward (VmHWM after
resetting it through /proc/self/clear_refs, minus VmRSS before; null where that is unavailable).
Size: the bytes of a safetensors file holding the format's tensors. `cost.json` is written beside
`result.json` (atomically); numbers are measured, never asserted by a test. Timing runs at one CPU
thread unless --threads or OMP_NUM_THREADS say otherwise; each latency keeps its spread, and a
measurement under a load average above the cores or with a wide spread is flagged `noisy`.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from suite import experiment as E
from suite import masks as M
from suite.cost_rows import BATCHES, cost_rows
from suite.errors import ConfigError

NOISY_SPREAD = 0.25  # interquartile range of the timed calls over their median above which a latency is noise
DEFAULT_THREADS = 1  # CPU threads: a fixed count, so speed-ups compare and a busy machine hurts least
FP32_TOLERANCE = 1e-4   # times max(1, max |logit|) of the masked model
FP16_TOLERANCE = 1e-2


class CostError(ConfigError):
    """Bad input to suite.cost: one line, exit 2."""


# --- loading a finished run ----------------------------------------------------------------------

def load_run(folder: Path, device: torch.device, data_root: str | None = None):
    """(config, masked model in eval mode, mask, data) of a finished run folder."""
    from safetensors.torch import load_file

    from suite.datasets import build_data
    from suite.models import build_model
    from suite.results import RunFolder, read_json

    run = RunFolder(folder)
    if not folder.is_dir():
        raise CostError(f"{folder}: not a run folder")
    status = run.status()
    if status.state != "finished":
        detail = f" ({status.detail})" if status.detail else ""
        raise CostError(f"{folder}: not a finished run: {status.state}{detail}")
    try:
        tree = read_json(folder / "config.json")
    except (OSError, ValueError) as e:
        raise CostError(f"{folder / 'config.json'}: cannot be read ({e})") from None
    cfg = E.from_dict(tree)
    data_cfg = cfg.data if data_root is None else dataclasses.replace(cfg.data, root=data_root)
    data = build_data(data_cfg, batch_size=cfg.train.batch_size, seed=cfg.seed, device=device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, data.spec, cfg.model.init, cfg.model)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        mask = {n: t.bool() for n, t in load_file(str(folder / "mask.safetensors")).items()}
    except (OSError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CostError(f"{folder}: the saved weights or mask do not load into {cfg.model.name}: {first}") from None
    weights = M.prunable_weights(model, cfg.prune.keep_first_dense, cfg.prune.keep_last_dense, cfg.prune.include)
    if set(mask) != set(weights):
        raise CostError(f"{folder}: mask.safetensors names other layers than {cfg.model.name}'s prunable ones")
    wrong = [n for n in weights if mask[n].shape != weights[n].shape]
    if wrong:
        n = wrong[0]
        raise CostError(f"{folder}: mask.safetensors has {n} of shape {list(mask[n].shape)}, but {cfg.model.name}'s "
                        f"{n} is {list(weights[n].shape)}")
    with torch.no_grad():
        for n, w in weights.items():
            w.mul_(mask[n])  # already zero in a finished run; a no-op that makes it certain
    return cfg, model.to(device).eval(), {n: m.to(device) for n, m in mask.items()}, data


# --- the formats ---------------------------------------------------------------------------------

class ConvWithBiasMap(nn.Module):
    """A convolution plus a fixed (out, H, W) map: the folded contribution of pruned input channels."""

    def __init__(self, conv: nn.Conv2d, bias_map: Tensor):
        super().__init__()
        self.conv = conv
        self.register_buffer("bias_map", bias_map)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.bias_map


class CSRLinear(nn.Module):
    """y = W x + b with W in compressed sparse rows, through torch.sparse.mm."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        with warnings.catch_warnings():  # "CSR support is in beta": this command says what it measures
            warnings.simplefilter("ignore", UserWarning)
            csr = linear.weight.detach().to_sparse_csr()
            self.weight = torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(),
                                                  csr.shape, check_invariants=True)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: Tensor) -> Tensor:
        y = torch.sparse.mm(self.weight, x.t()).t()
        return y if self.bias is None else y + self.bias

    def tensors(self) -> dict[str, Tensor]:
        out = {"crow_indices": self.weight.crow_indices(), "col_indices": self.weight.col_indices(),
               "values": self.weight.values()}
        return out if self.bias is None else {**out, "bias": self.bias}


class SemiStructuredLinear(nn.Module):
    """y = W x + b with W a 2:4 semi-structured sparse tensor (compressed values + metadata)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        from torch.sparse import to_sparse_semi_structured
        self.weight = to_sparse_semi_structured(linear.weight.detach())
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def tensors(self) -> dict[str, Tensor]:
        out = {k: getattr(self.weight, k) for k in ("packed", "meta") if getattr(self.weight, k, None) is not None}
        return out if self.bias is None else {**out, "bias": self.bias}


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _format_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The tensors a format saves: its own for the sparse layers, the state dict for the rest."""
    special = {name: m for name, m in model.named_modules() if hasattr(m, "tensors")}
    out = {}
    for name, m in special.items():
        out.update({f"{name}.{k}": v for k, v in m.tensors().items()})
    for key, t in model.state_dict().items():
        if not any(key.startswith(f"{name}.") for name in special):
            out[key] = t
    return out


def saved_bytes(tensors: dict[str, Tensor]) -> int:
    """Bytes of a safetensors file holding `tensors`."""
    from safetensors.torch import save
    return len(save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}))


def _slice_bn(bn: nn.modules.batchnorm._BatchNorm, keep: Tensor) -> nn.Module:
    new = type(bn)(int(keep.sum()), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats).to(keep.device)
    with torch.no_grad():
        for attr in ("weight", "bias", "running_mean", "running_var"):
            src = getattr(bn, attr)
            if src is not None:
                getattr(new, attr).copy_(src[keep])
        if bn.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.eval()


@torch.no_grad()
def compact(model: nn.Module, mask: M.Mask, example: Tensor) -> tuple[nn.Module | None, str]:
    """The model with every wholly pruned channel of its `channel_chain()` removed (see the module
    docstring), or (None, why not). `example`: a batch of inputs of the deployed size."""
    chain = getattr(model, "channel_chain", None)
    if chain is None:
        return None, f"{type(model).__name__} declares no channel_chain()"
    modules = dict(model.named_modules())
    heads = {}
    for layer, bn, nxt in chain():
        m = mask.get(f"{layer}.weight")
        if m is None:
            continue  # kept dense
        alive = M.rows_of(m).any(1)
        if not bool(alive.all()):
            heads[layer] = (alive, bn, nxt)
    if not heads:
        return None, "no whole channel of a chain layer is pruned"
    captured: dict[str, Tensor] = {}
    hooks = [modules[nxt].register_forward_pre_hook(
        lambda _m, args, name=nxt: captured.__setitem__(name, args[0].detach()))
        for _alive, _bn, nxt in heads.values()]
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
    out_keep: dict[str, Tensor] = {layer: alive for layer, (alive, _bn, _n) in heads.items()}
    in_keep: dict[str, Tensor] = {}
    extra: dict[str, Tensor] = {}
    for layer, (alive, bn, nxt) in heads.items():
        nxt_module, x = modules[nxt], captured[nxt]
        if isinstance(nxt_module, nn.Linear):
            cols = alive.repeat_interleave(nxt_module.in_features // alive.numel())
        else:
            cols = alive
        if cols.numel() != x.shape[1]:
            return None, f"{nxt} does not read {layer}'s channels one to one"
        dead = x[:, ~cols]
        if not bool((dead == dead[:1]).all()):
            return None, f"the pruned channels of {layer} do not give a constant input to {nxt}"
        constant = x[:1].clone()
        constant[:, cols] = 0  # only the pruned channels' constant part
        if isinstance(nxt_module, nn.Linear):
            extra[nxt] = F.linear(constant, nxt_module.weight)[0]
        else:
            extra[nxt] = nxt_module._conv_forward(constant, nxt_module.weight, None)[0]
        in_keep[nxt] = cols
    compacted = copy.deepcopy(model)
    for name in dict.fromkeys([*out_keep, *in_keep]):
        old = modules[name]
        rows = out_keep.get(name, torch.ones(old.weight.shape[0], dtype=torch.bool, device=old.weight.device))
        cols = in_keep.get(name, torch.ones(old.weight.shape[1], dtype=torch.bool, device=old.weight.device))
        weight = old.weight[rows][:, cols]
        bias = old.bias[rows] if old.bias is not None else None
        if isinstance(old, nn.Linear):
            new = nn.Linear(weight.shape[1], weight.shape[0], bias=old.bias is not None or name in extra)
            b = (bias if bias is not None else 0) + (extra[name][rows] if name in extra else 0)
            if new.bias is not None:
                new.bias.copy_(b)
        else:
            new = nn.Conv2d(weight.shape[1], weight.shape[0], old.kernel_size, old.stride, old.padding,
                            old.dilation, old.groups, bias=old.bias is not None, padding_mode=old.padding_mode)
            if bias is not None:
                new.bias.copy_(bias)
        new = new.to(weight.device)
        new.weight.copy_(weight)
        if not isinstance(old, nn.Linear) and name in extra:
            new = ConvWithBiasMap(new, extra[name][rows].contiguous())
        _set_module(compacted, name, new.eval())
    for layer, (alive, bn, _n) in heads.items():
        if bn is not None:
            _set_module(compacted, bn, _slice_bn(modules[bn], alive))
    return compacted.eval(), "ok"


def _prunable_linears(model: nn.Module, mask: M.Mask) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and f"{name}.weight" in mask]


def to_csr(model: nn.Module, mask: M.Mask) -> tuple[nn.Module | None, str]:
    names = _prunable_linears(model, mask)
    if not names:
        return None, "no prunable Linear layer"
    out = copy.deepcopy(model)
    for name in names:
        _set_module(out, name, CSRLinear(out.get_submodule(name)))
    return out.eval(), "ok"


def is_2_4(mask: Tensor) -> bool:
    """Every group of 4 consecutive weights of a row has at most 2 alive."""
    rows = M.rows_of(mask)
    return rows.shape[1] % 4 == 0 and bool((rows.reshape(rows.shape[0], -1, 4).sum(-1) <= 2).all())


def semi_structured_support(device: torch.device) -> str | None:
    """Why the 2:4 kernels cannot run here (None when they can)."""
    if device.type != "cuda":
        return "2:4 semi-structured kernels need a CUDA GPU of compute capability >= 8.0; this run is on the CPU"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return f"2:4 semi-structured kernels need compute capability >= 8.0; this GPU has {major}.{minor}"
    return None


def to_semi_structured(model: nn.Module, mask: M.Mask, device: torch.device) -> tuple[nn.Module | None, str]:
    why = semi_structured_support(device)
    if why:
        return None, why
    names = [n for n in _prunable_linears(model, mask) if is_2_4(mask[f"{n}.weight"])]
    if not names:
        return None, "no prunable Linear layer has a 2:4 mask"
    out = copy.deepcopy(model).half()
    done, refused = [], []
    for name in names:
        try:
            _set_module(out, name, SemiStructuredLinear(out.get_submodule(name)))
            done.append(name)
        except (RuntimeError, ValueError) as e:  # e.g. a shape the kernels do not take: that layer stays dense
            refused.append(f"{name} ({str(e).strip().splitlines()[0][:80] if str(e).strip() else type(e).__name__})")
    if not done:
        return None, f"the 2:4 kernels took no layer: {'; '.join(refused)}"
    return out.eval(), f"ok: {', '.join(done)} in 2:4" + (f"; dense fp16: {'; '.join(refused)}" if refused else "")


# --- measuring -----------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_memory(fn: Callable[[], object], device: torch.device) -> int | None:
    """Bytes: CUDA max_memory_allocated over fn (weights included); CPU peak RSS growth over fn."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device))
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    before = _status_kb("VmRSS")
    fn()
    peak = _status_kb("VmHWM")
    return None if before is None or peak is None else max(0, peak - before)


def latency(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """Median seconds of fn over `repeats` timed calls after `warmup` untimed ones, and their spread: the
    interquartile range over the median (0 for a single call)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    median = float(statistics.median(times))
    if len(times) < 2:
        return median, 0.0
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return median, (q3 - q1) / median if median > 0 else 0.0


def noise(load: float, cores: int, spreads: list[float]) -> list[str]:
    """Why a measurement is noise rather than the machine's speed: a load average above the cores this
    process may use (other processes take the CPU between our calls), or a latency whose spread is above
    NOISY_SPREAD. Empty when it can be trusted."""
    reasons = []
    if load > cores:
        reasons.append(f"load average {load:.2f} on {cores} cores")
    worst = max(spreads, default=0.0)
    if worst > NOISY_SPREAD:
        reasons.append(f"latency spread {worst:.0%} (interquartile range over median) above {NOISY_SPREAD:.0%}")
    return reasons


@torch.inference_mode()
def max_difference(reference: nn.Module, candidate: nn.Module, batches: list[Tensor],
                   dtype: torch.dtype) -> tuple[float, float]:
    """(max |candidate - reference| over the batches, max |reference|), both run in `dtype`."""
    diff, scale = 0.0, 0.0
    for x in batches:
        ref = reference(x.to(dtype)).float()
        out = candidate(x.to(dtype)).float()
        diff = max(diff, float((out - ref).abs().max()))
        scale = max(scale, float(ref.abs().max()))
    return diff, scale


def inputs_of(test: list[Tensor], n: int) -> Tensor:
    """The first n test inputs (the test set repeated if it is smaller)."""
    x = torch.cat(test)
    reps = -(-n // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:n].contiguous()


def measure_format(model: nn.Module, reference: nn.Module, test: list[Tensor], device: torch.device,
                   dtype: torch.dtype, backend: str, warmup: int, repeats: int) -> dict:
    """Equivalence to the masked model, then latency, throughput, peak memory and size."""
    diff, scale = max_difference(reference, model, test, dtype)
    tolerance = (FP32_TOLERANCE if dtype == torch.float32 else FP16_TOLERANCE) * max(1.0, scale)
    row = {"status": "ok" if diff <= tolerance else "mismatch", "backend": backend, "dtype": str(dtype).split(".")[-1],
           "max_abs_diff": diff, "tolerance": tolerance, "size_bytes": saved_bytes(_format_tensors(model)),
           "latency_s": {}, "latency_spread": {}, "throughput_per_s": {}, "peak_memory_bytes": None}
    if row["status"] != "ok":
        return row
    with torch.inference_mode():
        for b in BATCHES:
            x = inputs_of(test, b).to(dtype)
            seconds, spread = latency(lambda: model(x), device, warmup, repeats)
            row["latency_s"][str(b)] = seconds
            row["latency_spread"][str(b)] = spread
            row["throughput_per_s"][str(b)] = b / seconds
        x = inputs_of(test, BATCHES[-1]).to(dtype)
        row["peak_memory_bytes"] = peak_memory(lambda: model(x), device)
    return row


def measure_run(folder: Path, device: torch.device, warmup: int, repeats: int,
                data_root: str | None = None) -> dict:
    """cost.json's content for one finished run folder."""
    from suite.trainer import device_name

    cfg, model, mask, data = load_run(folder, device, data_root)
    test = [x for x, _y in data.test_batches()]
    result = {
        "run": str(folder), "method": cfg.method, "model": cfg.model.name, "dataset": cfg.data.name,
        "seed": cfg.seed, "experiment": E.experiment_hash(cfg), "structure": cfg.prune.structure,
        "nm": list(cfg.prune.nm) if cfg.prune.structure == "nm" else None,
        "target_sparsity": cfg.prune.target_sparsity, "achieved_sparsity": M.sparsity_of(mask),
        "device": device_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "batches": list(BATCHES), "warmup": warmup, "repeats": repeats, "test_examples": sum(len(x) for x in test),
        "memory": ("cuda: torch.cuda.max_memory_allocated over one batch-256 forward, weights included"
                   if device.type == "cuda" else
                   "cpu: peak RSS growth over one batch-256 forward (VmHWM reset through /proc/self/clear_refs; "
                   "page-granular, and 0 when the allocator already held the memory it needed)"),
        "formats": {},
    }
    dense_backend = f"torch dense ({'cuDNN/cuBLAS' if device.type == 'cuda' else 'aten CPU, mkldnn/oneDNN conv'})"
    builders = [
        ("dense_masked", lambda: (model, "ok"), torch.float32, dense_backend),
        ("compacted", lambda: compact(model, mask, inputs_of(test, min(BATCHES[-1], 64))), torch.float32,
         dense_backend),
        ("csr", lambda: to_csr(model, mask), torch.float32, "torch.sparse.mm, sparse_csr int32 (Linear layers)"),
        ("semi_structured_2_4", lambda: to_semi_structured(model, mask, device), torch.float16,
         "torch.sparse.to_sparse_semi_structured (Linear layers)"),
    ]
    for name, build, dtype, backend in builders:
        built, why = build()
        if built is None:
            result["formats"][name] = {"status": "skipped", "reason": why}
            continue
        reference = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        result["formats"][name] = measure_format(built, reference, test, device, dtype, backend, warmup, repeats)
        if why != "ok":
            result["formats"][name]["note"] = why
    from suite.threads import available_cores
    result["load_1min"], result["cores"] = os.getloadavg()[0], available_cores()
    spreads = [v for f in result["formats"].values() for v in f.get("latency_spread", {}).values()]
    result["noisy"] = noise(result["load_1min"], result["cores"], spreads)  # [] when the timings can be trusted
    return result


# --- for the report: speed-up and size ratio per format ---------------------------------------------

def format_rows(rows: list[dict]) -> str:
    from tabulate import tabulate

    batches = sorted({int(k[len("latency_ms_b"):]) for r in rows for k in r if k.startswith("latency_ms_b")})

    def cell(v, fmt):
        return "-" if v is None else format(v, fmt)

    table = [[r["model"], r["method"], r["structure"], cell(r["sparsity"], ".4f"), r["format"],
              (r["status"] if r["status"] != "skipped" else f"skipped: {r['reason']}") + (" (noisy)" if r["noisy"] else ""),
              *[cell(r[f"latency_ms_b{b}"], ".3f") for b in batches], *[cell(r[f"speedup_b{b}"], ".2f") for b in batches],
              cell(r["size_bytes"], ",d"), cell(r["size_ratio"], ".3f"), cell(r["max_abs_diff"], ".2e")]
             for r in rows]
    headers = ["model", "method", "structure", "sparsity", "format", "status",
               *[f"ms b{b}" for b in batches], *[f"speed-up b{b}" for b in batches], "bytes", "size ratio", "max diff"]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


# --- the command -----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m suite.cost", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, metavar="RUN_FOLDER", help="finished runs' seed folders")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when visible; default auto)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forward passes before timing (default 3)")
    parser.add_argument("--repeats", type=int, default=20, help="timed forward passes per batch size (default 20)")
    parser.add_argument("--data-root", default=None, help="where the run's dataset lives (default: its config's data.root)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch intra-op threads (default: OMP_NUM_THREADS, else {DEFAULT_THREADS}: a fixed count, "
                             f"so that speed-ups compare across runs and machines)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    return parser.parse_args(argv)


def cost_threads(asked: int | None) -> tuple[int, str]:
    """The thread count to measure at, and why: --threads, else OMP_NUM_THREADS, else DEFAULT_THREADS."""
    if asked is not None:
        return asked, "--threads"
    try:
        omp = int(os.environ.get("OMP_NUM_THREADS") or 0)
    except ValueError:
        omp = 0
    if omp >= 1:
        return omp, "OMP_NUM_THREADS"
    return DEFAULT_THREADS, "the default; --threads n sets it"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise CostError(f"--device: '{name}' is not one of cpu, cuda, auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise CostError("--device cuda: no CUDA device is visible to torch")
    return torch.device(name)


def main(argv: list[str] | None = None) -> int:
    from suite.exits import EXIT_BAD_INPUT, crash_line
    from suite.results import RunFolder, write_json

    args = parse_args(argv)
    folder = None
    try:
        if args.warmup < 0 or args.repeats < 1:
            raise CostError("--warmup must be >= 0 and --repeats >= 1")
        if args.threads is not None and args.threads < 1:
            raise CostError(f"--threads: must be at least 1, got {args.threads}")
        threads, why = cost_threads(args.threads)
        torch.set_num_threads(threads)
        device = resolve_device(args.device)
        for folder in args.folders:  # every folder is checked before anything is measured
            if not folder.is_dir():
                raise CostError(f"{folder}: not a run folder")
            status = RunFolder(folder).status()
            if status.state != "finished":
                raise CostError(f"{folder}: not a finished run: {status.state}"
                                + (f" ({status.detail})" if status.detail else ""))
        costs = []
        print(f"cost: {threads} thread{'s' if threads > 1 else ''} ({why}), median of {args.repeats} timed calls",
              file=sys.stderr, flush=True)
        for folder in args.folders:
            print(f"cost: {folder}", file=sys.stderr, flush=True)
            cost = measure_run(folder, device, args.warmup, args.repeats, args.data_root)
            write_json(folder / "cost.json", cost)
            costs.append(cost)
            if cost["noisy"]:
                print(f"warning: {folder}: timings are noise, not this machine's speed ({'; '.join(cost['noisy'])}); "
                      f"cost.json says so (noisy); measure again on an idle machine", file=sys.stderr, flush=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except Exception as e:  # noqa: BLE001 - one line, the traceback in the log
        print(crash_line(e, folder, args.debug), file=sys.stderr, flush=True)
        return 1
    print(format_rows(cost_rows(costs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

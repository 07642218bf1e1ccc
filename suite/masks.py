"""The mask: which weights live. Exact global top-k, enforcement in the step, cross-rank checks."""
from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
from torch import Tensor, nn

from suite.errors import ConfigError

Mask = dict[str, Tensor]  # prunable weight name -> bool tensor of its shape, True = the weight lives
Scores = dict[str, Tensor]  # prunable weight name -> score of its shape, higher = kept first

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def weight_name(module_name: str) -> str:
    """The parameter name of a prunable layer's weight, as `prunable_weights` and the mask keys name it."""
    return f"{module_name}.weight" if module_name else "weight"  # a bare layer passed as the model


def prunable_weights(model: nn.Module, keep_first_dense: bool = False, keep_last_dense: bool = False,
                     include: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
    """The weights pruning may remove, in module order. A model that declares its own set
    (`prunable_parameters(include)`, e.g. the GPT's block matrices plus the groups named in
    `include`) gives it; otherwise the weights of the Conv and Linear layers (biases and BatchNorm
    never count), and `include` must be empty."""
    declared = getattr(model, "prunable_parameters", None)
    if declared is not None:
        found = dict(declared(tuple(include)))
    else:
        if include:
            raise ConfigError(f"prune.include: {type(model).__name__} has no optional groups to include "
                              f"(every Conv and Linear weight is prunable already); got {list(include)}")
        found = {weight_name(name): m.weight for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}
    names = list(found)
    dense = set(names[:1] if keep_first_dense else []) | set(names[-1:] if keep_last_dense else [])
    return {n: w for n, w in found.items() if n not in dense}


def dense_parameters(model: nn.Module, prunable: dict[str, Tensor]) -> dict[str, int]:
    """Every parameter outside the prunable set and its size: what stays dense whatever the mask."""
    chosen = {id(w) for w in prunable.values()}
    return {name: p.numel() for name, p in model.named_parameters() if id(p) not in chosen}


def full_mask(weights: dict[str, Tensor]) -> Mask:
    """Every weight alive."""
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


def n_zeros_for(sparsity: float, total: int) -> int:
    """How many weights a mask at `sparsity` has pruned: exactly round(s * N)."""
    return round(sparsity * total)


def count_alive(mask: Mask) -> int:
    return int(sum(int(torch.count_nonzero(m)) for m in mask.values()))  # ~20x a bool sum on CPU


def count_total(mask: Mask) -> int:
    return sum(m.numel() for m in mask.values())


def sparsity_of(mask: Mask) -> float:
    """Fraction of the masked weights that are pruned."""
    total = count_total(mask)
    return (total - count_alive(mask)) / total if total else 0.0


def layer_sparsity(mask: Mask) -> dict[str, float]:
    return {name: (m.numel() - int(torch.count_nonzero(m))) / m.numel() for name, m in mask.items()}


def keep_top(scores: Scores, n_keep: int, alive: Mask | None = None) -> Mask:
    """Keep exactly the `n_keep` highest scores over all layers at once (one global threshold).

    Dead weights (alive False) and NaN scores rank below every live one, so they are kept only when
    nothing else is left. Ties at the threshold keep the earliest positions in layer order, so the
    result is deterministic and identical on every rank. Exact for any size: it uses a k-th value,
    never torch.quantile (which refuses more than 2**24 elements)."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).float() for n in names])
    total = flat.numel()
    if not 0 <= n_keep <= total:
        raise ValueError(f"n_keep={n_keep} is outside [0, {total}]")
    flat.nan_to_num_(nan=-torch.inf)  # torch.cat always copies: the caller's scores stay as they were
    if alive is not None:
        live = torch.cat([alive[n].reshape(-1) for n in names]).to(flat.device)
        flat.masked_fill_(~live, -torch.inf)
    if n_keep == 0:
        keep = torch.zeros(total, dtype=torch.bool, device=flat.device)
    elif n_keep == total:
        keep = torch.ones(total, dtype=torch.bool, device=flat.device)
    else:
        # dead scores are -inf, below every live one: while n_keep <= the live count the n_keep-th
        # largest score is the n_keep-th largest live one, and selecting among fewer is faster
        pool = flat
        if alive is not None and n_keep <= int(torch.count_nonzero(live)) < total:
            pool = flat[live]
        # the n_keep-th largest value is the (size - n_keep + 1)-th smallest
        threshold = torch.kthvalue(pool.cpu() if pool.device.type == "mps" else pool, pool.numel() - n_keep + 1).values
        above = flat > threshold
        at = flat == threshold
        room = n_keep - int(torch.count_nonzero(above))
        # only a tie straddling the threshold needs the (slower) positional tie-break
        keep = above | at if int(torch.count_nonzero(at)) == room else above | (at & (torch.cumsum(at, 0) <= room))
    out, start = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = keep[start:start + size].view(scores[n].shape)
        start += size
    return out


DISTRIBUTIONS = ("global", "uniform", "erk")  # how a sparsity is spread over the layers


def layer_densities(shapes: dict[str, torch.Size], density: float, distribution: str) -> dict[str, float]:
    """Each layer's density (fraction alive) for an overall `density` under a layer-wise distribution.

    uniform: every layer at `density`. erk (Erdos-Renyi-Kernel, Evci et al. 2020, as in the official
    rigl sparse_utils.get_sparsities_erdos_renyi): density_l = eps * sum(dims_l) / prod(dims_l) with
    eps chosen so that the alive count matches; while the largest density exceeds 1, the layers with
    the largest sum/prod are made dense and eps is recomputed over the rest. (Capping one layer only
    raises eps, so capping every layer above 1 at once gives the same result.) `global` has no
    densities of its own: they follow the scores (one top-k over all layers)."""
    if not 0 <= density <= 1:
        raise ValueError(f"density: must be in [0, 1], got {density}")
    if distribution == "uniform":
        return {name: float(density) for name in shapes}
    if distribution != "erk":
        raise ValueError(f"distribution: '{distribution}' has no per-layer densities (use uniform or erk)")
    sizes = {name: int(torch.Size(shape).numel()) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        # alive weights still to place among the non-dense layers, over sum(raw * size) of those
        rhs = sum(sizes[n] * density for n in shapes if n not in dense) - sum(sizes[n] * (1 - density) for n in dense)
        divisor = sum(raw[n] * sizes[n] for n in shapes if n not in dense)
        if divisor == 0:  # every layer dense
            return {n: 1.0 for n in shapes}
        eps = rhs / divisor
        largest = max(raw[n] for n in shapes if n not in dense)
        if largest * eps <= 1:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= {n for n in shapes if n not in dense and raw[n] == largest}


def layer_zero_counts(shapes: dict[str, torch.Size], sparsity: float, distribution: str,
                      at_least: dict[str, int] | None = None, n_zeros: int | None = None) -> dict[str, int]:
    """Pruned weights per layer under `distribution` ("uniform" or "erk"), summing to exactly
    round(sparsity * N): each layer gets the floor of its ideal count size * (1 - density), and the
    weights still missing go one each to the layers with the largest remainders (ties: layer order).

    `at_least`: a lower bound per layer (the weights a monotonic method has already pruned there).
    A layer lifted to its bound takes no remainder weight; if the bounds push the total over, the
    other layers give back one weight each, smallest remainder first, so the total stays exact
    unless the bounds alone exceed it. `n_zeros`: the exact total to reach, when the caller has
    counted it (default round(sparsity * N))."""
    sizes = {name: int(torch.Size(shape).numel()) for name, shape in shapes.items()}
    densities = layer_densities(shapes, 1.0 - sparsity, distribution)
    ideal = {n: (sizes[n] * sparsity if distribution == "uniform" else sizes[n] * (1.0 - densities[n]))
             for n in shapes}
    floor = {n: min(sizes[n], max(0, int(ideal[n] // 1))) for n in shapes}
    low = {n: min(sizes[n], (at_least or {}).get(n, 0)) for n in shapes}
    counts = {n: max(floor[n], low[n]) for n in shapes}
    goal = n_zeros_for(sparsity, sum(sizes.values())) if n_zeros is None else n_zeros
    missing = goal - sum(counts.values())
    remainder = {n: ideal[n] - floor[n] for n in shapes}
    # sorted is stable: ties keep layer order
    largest_first = sorted((n for n in shapes if counts[n] == floor[n]), key=lambda n: -remainder[n])
    smallest_first = sorted(shapes, key=lambda n: remainder[n])
    while missing > 0:
        room = [n for n in largest_first if counts[n] < sizes[n]] or [n for n in shapes if counts[n] < sizes[n]]
        if not room:
            break  # cannot happen: round(s * N) <= N
        for n in room[:missing]:
            counts[n] += 1
        missing -= len(room[:missing])
    while missing < 0:
        spare = [n for n in smallest_first if counts[n] > low[n]]
        if not spare:
            break  # the bounds alone exceed the total
        for n in spare[:-missing]:
            counts[n] -= 1
        missing += len(spare[:-missing])
    return counts


STRUCTURES = ("unstructured", "nm", "channel")  # which groups of weights live or die together


def mask_at_sparsity(scores: Scores, sparsity: float, alive: Mask | None = None,
                     distribution: str = "global", structure: str = "unstructured",
                     nm: tuple[int, int] = (2, 4)) -> Mask:
    """The mask keeping the highest scores at `sparsity`; with `alive` (on any device), intersected
    with it so that no weight regrows. On the scores' device.

    unstructured: exactly round(sparsity * N) zeros. global: one top-k over all layers;
    uniform/erk: each layer keeps its own top-k, its zero count from `layer_zero_counts` (never
    fewer than the zeros `alive` already has there). nm and channel: see `nm_mask` and
    `channel_mask`. A method only brings the scores: the grouping is the same for every method."""
    if structure not in _STRUCTURED:
        raise ValueError(f"structure: '{structure}' is not one of {', '.join(STRUCTURES)}")
    mask = _STRUCTURED[structure](scores, sparsity, alive, distribution, tuple(nm))
    if alive is not None:
        mask = {n: m & alive[n].to(m.device) for n, m in mask.items()}
    return mask


def layout(prune) -> dict:
    """The keyword arguments of `mask_at_sparsity` that a run's `prune` section sets: how the
    scores become a mask (distribution, structure, N:M), the same for every method."""
    return {"distribution": prune.distribution, "structure": prune.structure, "nm": tuple(prune.nm)}


def _unstructured_zeros(scores: Scores, sparsity: float, n_zeros: int, alive: Mask | None,
                        distribution: str) -> Mask:
    """Exactly `n_zeros` zeros over all the layers of `scores` (one top-k, or one per layer, the
    layers' shares from `sparsity`)."""
    total = sum(s.numel() for s in scores.values())
    if distribution == "global":
        return keep_top(scores, total - n_zeros, alive)
    at_least = None if alive is None else {n: m.numel() - int(torch.count_nonzero(m)) for n, m in alive.items()}
    counts = layer_zero_counts({n: s.shape for n, s in scores.items()}, sparsity, distribution, at_least,
                               n_zeros=n_zeros)
    mask = {}
    for n, s in scores.items():
        live = None if alive is None else {n: alive[n]}
        mask[n] = keep_top({n: s}, s.numel() - counts[n], live)[n]
    return mask


def _unstructured(scores: Scores, sparsity: float, alive: Mask | None, distribution: str, nm) -> Mask:
    total = sum(s.numel() for s in scores.values())
    return _unstructured_zeros(scores, sparsity, n_zeros_for(sparsity, total), alive, distribution)


def rows_of(t: Tensor) -> Tensor:
    """A weight as (output channels, inputs): Linear (out, in) as it is; a Conv (out, in, kh, kw)
    flattened row-major to (out, in * kh * kw), the GEMM view of an im2col convolution (and of
    `weight.flatten(1)`). N:M groups run along a row, channels are rows."""
    return t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(-1, 1)


def _ranked(scores: Tensor, alive: Tensor | None) -> Tensor:
    """Scores as float with dead weights at -inf and NaN live scores just above them."""
    ranked = scores.detach().float().nan_to_num(nan=-torch.finfo(torch.float32).max)
    if alive is not None:
        ranked = ranked.masked_fill(~alive.to(ranked.device), -torch.inf)
    return ranked


def nm_layers(shapes: dict[str, torch.Size], m: int) -> list[str]:
    """The layers N:M applies to: those whose row length (inputs per output channel, see `rows_of`)
    is a multiple of M. The others are pruned without structure (see `nm_mask`)."""
    return [n for n, shape in shapes.items() if len(shape) > 1 and torch.Size(shape)[1:].numel() % m == 0]


def top_n_per_group(ranked: Tensor, n: int, m: int) -> Tensor:
    """(out, G, M) -> bool of the same shape: the n highest of each group of M (ties: earliest)."""
    order = torch.sort(ranked, dim=-1, descending=True, stable=True).indices[..., :n]
    return torch.zeros_like(ranked, dtype=torch.bool).scatter_(-1, order, True)


def nm_mask(scores: Scores, sparsity: float, alive: Mask | None = None, distribution: str = "global",
            nm: tuple[int, int] = (2, 4)) -> Mask:
    """N:M: in every group of M consecutive weights of a row (`rows_of`) the N highest scores live.

    The unit of pruning is the group: a group is dense (M alive) or converted (exactly N alive). At
    the pattern's sparsity 1 - N/M every group of every N:M layer (`nm_layers`) is converted; at a
    lower sparsity s (a progressive schedule on its way, an LTH round) K = round(s / (1 - N/M) * G)
    of the G groups are, those that lose the least score (sum of their M - N lowest scores): one
    ranking over all layers under `global`, K split over the layers in proportion to their groups
    (largest remainder) otherwise. A converted group (any dead member) stays converted, so masks only
    lose groups. Layers whose row length is not a multiple of M take the rest of the exact count
    round(s * N) without structure, by `distribution`.

    Above 1 - N/M (e.g. 98% under 2:4) the mask is the full pattern's, pruned further without
    structure to exactly round(s * N) zeros over all layers, by `distribution`: every group then has
    at most N alive, which the N:M kernels take (a zero among the N kept is stored as a value)."""
    n, m = nm
    if not 1 <= n < m:
        raise ValueError(f"nm: expected [N, M] with 1 <= N < M, got {list(nm)}")
    pattern = 1 - n / m
    total = sum(s.numel() for s in scores.values())
    if sparsity > pattern + 1e-9:
        full = nm_mask(scores, pattern, alive, distribution, nm)
        if alive is not None:
            full = {k: v & alive[k].to(v.device) for k, v in full.items()}
        return _unstructured_zeros(scores, sparsity, n_zeros_for(sparsity, total), full, distribution)
    structured = nm_layers({k: s.shape for k, s in scores.items()}, m)
    groups, converted, cost = {}, {}, {}
    for k in structured:
        ranked = _ranked(scores[k], None if alive is None else alive[k]).reshape(scores[k].shape[0], -1, m)
        groups[k] = ranked
        dead = torch.isneginf(ranked).any(-1)
        lowest = torch.sort(ranked, dim=-1, stable=True).values[..., :m - n].sum(-1)
        converted[k] = dead
        cost[k] = lowest.masked_fill(dead, -torch.inf)  # converted groups rank first, so they stay
    n_groups = {k: groups[k].shape[0] * groups[k].shape[1] for k in structured}
    total_groups = sum(n_groups.values())
    already = sum(int(torch.count_nonzero(c)) for c in converted.values())
    n_convert = min(total_groups, max(already, round(sparsity / pattern * total_groups)))
    if not structured:
        convert = {}
    elif distribution == "global":
        kept = keep_top({k: cost[k].reshape(-1) for k in structured}, total_groups - n_convert)
        convert = {k: ~kept[k].view_as(cost[k]) for k in structured}
    else:
        counts = layer_zero_counts({k: torch.Size([n_groups[k]]) for k in structured}, n_convert / total_groups,
                                   "uniform", {k: int(torch.count_nonzero(converted[k])) for k in structured},
                                   n_zeros=n_convert)
        convert = {k: ~keep_top({k: cost[k].reshape(-1)}, n_groups[k] - counts[k])[k].view_as(cost[k])
                   for k in structured}
    mask: Mask = {}
    for k in structured:
        keep = top_n_per_group(groups[k], n, m) | ~convert[k].unsqueeze(-1)
        mask[k] = keep.reshape(scores[k].shape)
    rest = [k for k in scores if k not in mask]
    if rest:
        structured_zeros = sum(int(torch.count_nonzero(~mask[k])) for k in structured)
        rest_total = sum(scores[k].numel() for k in rest)
        dead_rest = 0 if alive is None else sum(alive[k].numel() - int(torch.count_nonzero(alive[k])) for k in rest)
        n_zeros = min(rest_total, max(dead_rest, n_zeros_for(sparsity, total) - structured_zeros))
        mask.update(_unstructured_zeros({k: scores[k] for k in rest}, n_zeros / rest_total, n_zeros,
                                        None if alive is None else {k: alive[k] for k in rest}, distribution))
    return {k: mask[k] for k in scores}


def _nm(scores, sparsity, alive, distribution, nm) -> Mask:
    return nm_mask(scores, sparsity, alive, distribution, nm)


def _prune_order(channel_scores: Tensor) -> Tensor:
    """Indices from the first to prune to the last: lowest score first, among equal scores the
    later position first (so the earliest survive, `keep_top`'s rule)."""
    flipped = torch.sort(channel_scores.flip(0), stable=True).indices
    return channel_scores.numel() - 1 - flipped


def channel_mask(scores: Scores, sparsity: float, alive: Mask | None = None,
                 distribution: str = "global") -> Mask:
    """Whole output channels (rows of `rows_of`: Linear neurons, conv filters) by their summed score.

    A channel's score is the sum of its live weights' scores (NaN counts 0); a channel with no live
    weight is dead and ranks first (so it stays dead). The highest-scored channel of each layer is
    never pruned: no layer is emptied. The weight target round(s * N) maps to channels like this:
    `global` walks all layers' channels from the lowest score up and prunes the longest prefix whose
    weights (each channel counts its row length) fit in the target; `uniform`/`erk` give each layer
    its zero count (`layer_zero_counts`) and prune floor(count / row length) channels there, lowest
    first. So the count is exact in whole channels and the sparsity reached is at most the target,
    short by less than one channel per layer (per run, under global)."""
    total = sum(s.numel() for s in scores.values())
    goal = n_zeros_for(sparsity, total)
    names = list(scores)
    channel_scores, fan_in, protect = {}, {}, {}
    for k in names:
        rows = rows_of(scores[k].detach().float()).nan_to_num(nan=0.0)
        live = torch.ones_like(rows, dtype=torch.bool) if alive is None else rows_of(alive[k].to(rows.device))
        summed = torch.where(live, rows, 0.0).sum(1).masked_fill(~live.any(1), -torch.inf)
        channel_scores[k], fan_in[k] = summed, rows.shape[1]
        protect[k] = int(_prune_order(summed)[-1])  # the best channel (the earliest among equals)
    pruned: dict[str, Tensor] = {k: torch.zeros_like(channel_scores[k], dtype=torch.bool) for k in names}
    if distribution == "global":
        layer_of = torch.cat([torch.full_like(channel_scores[k], i, dtype=torch.long) for i, k in enumerate(names)])
        index = torch.cat([torch.arange(channel_scores[k].numel(), device=channel_scores[k].device) for k in names])
        sizes = torch.cat([torch.full_like(channel_scores[k], fan_in[k], dtype=torch.long) for k in names])
        flat = torch.cat([channel_scores[k].masked_fill(
            torch.arange(channel_scores[k].numel(), device=channel_scores[k].device) == protect[k], torch.inf)
            for k in names])
        order = _prune_order(flat)
        candidates = order[~torch.isposinf(flat[order])]  # the protected channels are never candidates
        fits = int(torch.count_nonzero(torch.cumsum(sizes[candidates], 0) <= goal))
        for c in candidates[:fits].tolist():
            pruned[names[int(layer_of[c])]][int(index[c])] = True
    else:
        at_least = None if alive is None else {k: m.numel() - int(torch.count_nonzero(m)) for k, m in alive.items()}
        counts = layer_zero_counts({k: s.shape for k, s in scores.items()}, sparsity, distribution, at_least)
        for k in names:
            dead = int(torch.count_nonzero(torch.isneginf(channel_scores[k])))
            n_prune = min(channel_scores[k].numel() - 1, max(dead, counts[k] // fan_in[k]))
            order = _prune_order(channel_scores[k])
            order = order[order != protect[k]]
            pruned[k][order[:n_prune]] = True
    return {k: (~pruned[k]).unsqueeze(1).expand(rows_of(scores[k]).shape).reshape(scores[k].shape).clone()
            for k in names}


def _channel(scores, sparsity, alive, distribution, nm) -> Mask:
    return channel_mask(scores, sparsity, alive, distribution)


_STRUCTURED = {"unstructured": _unstructured, "nm": _nm, "channel": _channel}


def count_revived(before: Mask, after: Mask) -> int:
    """Weights dead in `before` and alive in `after` (on `before`'s devices)."""
    return int(sum(int(torch.count_nonzero(after[n].to(m.device) & ~m)) for n, m in before.items()))


def already_at(mask: Mask, sparsity: float) -> bool:
    """True when the mask already has as many zeros as `sparsity` asks for: pruning again would
    remove nothing (and scoring trained weights after a resume would be wrong)."""
    total = count_total(mask)
    return total - count_alive(mask) >= n_zeros_for(sparsity, total)


def magnitude_scores(weights: dict[str, Tensor]) -> Scores:
    return {n: w.detach().abs() for n, w in weights.items()}


def smallest_alive_magnitude(weights: dict[str, Tensor], mask: Mask) -> float:
    """The effective global magnitude threshold of a mask: the smallest |w| that survives."""
    # where + amin: no boolean indexing (a nonzero and a gather over every weight)
    smallest = [torch.where(mask[n], w.detach().abs(), torch.inf).amin() for n, w in weights.items()
                if bool(mask[n].any())]
    return float(torch.stack(smallest).min()) if smallest else float("nan")


class MaskedWeights:
    """Holds the mask as float multipliers and enforces it with fused foreach ops (no per-layer
    Python hooks, no host sync): weights before forward and after every step, gradients before
    the step. An all-ones mask costs nothing, so dense training is not slowed."""

    def __init__(self, weights: dict[str, nn.Parameter]):
        self.names = list(weights)
        self.params = list(weights.values())
        self.mask: Mask = full_mask(weights)
        self._multipliers: list[Tensor] = []

    def install(self, mask: Mask, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Adopt a new mask: every weight that is not alive both before and after (the pruned ones,
        and any that changed in either direction) is set to exactly 0 with its optimizer state
        (momentum of a newly pruned weight would otherwise move it again; a revived weight starts
        from zero). Weights alive in both masks keep their values and state."""
        new = {n: mask[n].to(p.device) for n, p in zip(self.names, self.params)}
        kept = [new[n] & self.mask[n] for n in self.names]
        was_dense = not self._multipliers
        self.mask = new
        dense = all(bool(m.all()) for m in new.values())
        self._multipliers = [] if dense else [new[n].to(p.dtype) for n, p in zip(self.names, self.params)]
        if dense and was_dense:
            return  # nothing changed: an all-ones mask costs nothing
        with torch.no_grad():
            multipliers = [k.to(p.dtype) for k, p in zip(kept, self.params)]
            torch._foreach_mul_(self.params, multipliers)
            inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate wraps the optimizer
            if inner is not None:
                for p, m in zip(self.params, multipliers):
                    for value in inner.state.get(p, {}).values():
                        if isinstance(value, Tensor) and value.shape == p.shape:
                            value.mul_(m)

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        if self._multipliers:
            torch._foreach_mul_(self.params, self._multipliers)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        if self._multipliers:
            pairs = [(p.grad, m) for p, m in zip(self.params, self._multipliers) if p.grad is not None]
            if pairs:
                grads, multipliers = zip(*pairs)
                torch._foreach_mul_(list(grads), list(multipliers))


# --- ranks -------------------------------------------------------------------------------------

def fingerprint(mask: Mask) -> str:
    """A short digest of the mask's exact content, comparable across ranks."""
    h = hashlib.sha256()
    for name in sorted(mask):
        h.update(name.encode())
        h.update(mask[name].detach().to("cpu", torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def broadcast_mask(mask: Mask, device: torch.device | str) -> Mask:
    """The main process's mask on every rank (one broadcast of all layers at once)."""
    if _world() == 1:
        return mask
    names = list(mask)
    flat = torch.cat([mask[n].reshape(-1) for n in names]).to(device=device, dtype=torch.uint8)
    dist.broadcast(flat, src=0)
    out, start = {}, 0
    for n in names:
        size = mask[n].numel()
        out[n] = flat[start:start + size].view(mask[n].shape).bool().to(mask[n].device)
        start += size
    return out


class RankMismatch(RuntimeError):
    """Ranks disagree about state that must be identical."""


def check_same_on_all_ranks(digest: str, what: str, device: torch.device | str) -> None:
    """Compare a digest across ranks; raise on every rank if any differs."""
    if _world() == 1:
        return
    mine = torch.tensor([int(digest[:15], 16)], dtype=torch.int64, device=device)
    everyone = [torch.zeros_like(mine) for _ in range(_world())]
    dist.all_gather(everyone, mine)
    values = [int(t) for t in everyone]
    if len(set(values)) != 1:
        raise RankMismatch(f"{what} differs across ranks (digests {[f'{v:x}' for v in values]}): "
                           "the ranks' weights or scores diverged")


def synchronise(mask: Mask, device: torch.device | str) -> Mask:
    """Make every rank use the main process's mask, and stop if any rank had computed another."""
    mine = fingerprint(mask)
    shared = broadcast_mask(mask, device)
    check_same_on_all_ranks(mine, "the mask computed by each rank", device)
    return shared

"""FLOPs accounting: each prunable layer's dense forward FLOPs, counted once per model with
torch.utils.flop_counter.FlopCounterMode, scaled by the layer's density.

Per example, with F_l the dense forward FLOPs of prunable layer l, d_l its density (alive / size)
and F_other the forward FLOPs of everything else (layers kept dense, and attention's products QK^T and
AV, which pruning the weight matrices does not shrink; FlopCounterMode counts matrix products,
convolutions and scaled_dot_product_attention, not BatchNorm, softmax or activations):
- forward = F_other + sum_l d_l F_l (the inference cost of a mask);
- one training step = 3 x forward (backward = 2 x forward: the gradients of the activations and
  of the weights, each the cost of a forward);
- a step whose hook updates the mask from dense gradients (`PruningMethod.dense_grads`, RigL, at its
  update steps only) computes the weight gradient densely: + sum_l (1 - d_l) F_l, i.e. 2 f_S + f_D as
  Evci et al. (2020) count it.
A run's `train_flops` sums the steps it ran (every round of a chain) times the examples per step
(the global batch), plus the FLOPs of the methods' scoring passes outside the steps (`scoring_flops`,
counted by FlopCounterMode around the hooks, summed over ranks); `train_cost_x_dense_cycle` divides by
one dense training cycle of the same settings, 3 x F_dense x the examples of one cycle (`dense_cycle_flops`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from suite.masks import Mask, weight_name


def _sdpa_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch counts scaled_dot_product_attention's CUDA kernels but not the CPU one it dispatches to
# (0 FLOPs): the attention products QK^T and AV, 2 b h s_q s_k (d_qk + d_v), by torch's own formulas
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_forward,
                  torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward}


def counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts scaled_dot_product_attention on the CPU."""
    return FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)


def _count(fn) -> int:
    with counter() as c:
        fn()
    return int(c.get_total_flops())


@dataclass(frozen=True)
class ModelFlops:
    """Dense forward FLOPs of one example: the whole model and each prunable layer."""
    total: int
    layers: dict[str, int]   # prunable weight name -> its layer's forward FLOPs

    @property
    def other(self) -> int:
        return self.total - sum(self.layers.values())

    def forward(self, densities: dict[str, float]) -> float:
        """One example's forward FLOPs under a mask with these per-layer densities."""
        return self.other + sum(f * densities[n] for n, f in self.layers.items())

    def train_step(self, densities: dict[str, float], dense_grads: bool = False) -> float:
        """One example's forward + backward FLOPs (see the module docstring)."""
        extra = sum(f * (1.0 - densities[n]) for n, f in self.layers.items()) if dense_grads else 0.0
        return 3.0 * self.forward(densities) + extra


def _recorder(inputs: dict[str, tuple], name: str):
    def hook(module: nn.Module, args: tuple) -> None:  # returns None: the input is left as it is
        inputs.setdefault(name, tuple(a.detach() for a in args))
    return hook


@torch.no_grad()
def count_model_flops(model: nn.Module, weights: dict[str, Tensor], input_shape: tuple[int, ...],
                      device: torch.device | str) -> ModelFlops:
    """FlopCounterMode counts of one forward of one all-zero example (eval mode, flags restored),
    for the model and, separately, for each module whose weight is in `weights` (on the input that
    module received)."""
    inputs: dict[str, tuple] = {}
    handles = []
    names = {id(w): n for n, w in weights.items()}
    modules = {}
    for module_name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor) and id(weight) in names and weight_name(module_name) == names[id(weight)]:
            name = names[id(weight)]
            modules[name] = module
            handles.append(module.register_forward_pre_hook(_recorder(inputs, name)))
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        x = torch.zeros(1, *input_shape, device=device)
        total = _count(lambda: model(x))
    finally:
        for h in handles:
            h.remove()
        for m, training in flags.items():
            m.training = training
    missing = [n for n in weights if n not in inputs]
    if missing:
        raise ValueError(f"FLOPs: layers {missing} were not reached by a forward pass")
    layers = {n: _count(lambda n=n: modules[n](*inputs[n])) for n in weights}
    return ModelFlops(total, layers)


def densities(mask: Mask) -> dict[str, float]:
    """Each layer's fraction of live weights."""
    return {n: int(torch.count_nonzero(m)) / m.numel() for n, m in mask.items()}

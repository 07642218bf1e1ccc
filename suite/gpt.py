"""A character-level GPT after nanoGPT's model.py (Karpathy): pre-LayerNorm decoder blocks, causal
self-attention through F.scaled_dot_product_attention, a GELU MLP of 4x width, learned token and
position embeddings, GPT-2's init. Sizes come from `model.*` (n_layer, n_head, n_embd, dropout,
bias) and the context from `data.context`; the default is nanoGPT's CPU recipe for Tiny
Shakespeare (4 layers, 4 heads, width 128, context 64, dropout 0, no biases: 812,416 parameters).

Choices where nanoGPT leaves room:
- bias=False by default (nanoGPT's `shakespeare_char` config and its recommendation: a little
  better and faster); `model.bias=true` puts biases in every Linear and LayerNorm.
- The output head is its own matrix, not tied to the token embedding (nanoGPT ties them): a tied
  pair could not be pruned in one place and kept dense in the other.
- The logits come out as (batch, vocabulary, context), the layout F.cross_entropy takes for
  per-position targets of shape (batch, context): the trainer's loss, accuracy and counts are then
  per character, and an example stays one window (for DDP shards and scoring draws).

The prunable set (`prunable_parameters`): the four weight matrices of every block (attention
qkv and output projections, MLP up and down), as the language-model pruning literature prunes.
The embeddings, LayerNorms, biases and the output head stay dense unless `prune.include` names
the groups "embeddings" (token and position tables) or "head".

The optimizer groups are nanoGPT's, by the trainer's generic rule (suite/trainer.py, AdamW): every
tensor of two or more dimensions decays (the matrices and embeddings), LayerNorm gains and biases
do not; this model needs no rule of its own.

SynFlow's all-ones input (`forward(x, embedded=True)`): tokens are integers, so the all-ones
input is placed at the embedding output, a (1, context, n_embd) tensor of ones fed to the first
block. In that linearised pass each LayerNorm applies only its affine part (|gain| x + |bias|):
normalising an all-ones vector would give zeros and no flow would reach any block. Attention
stays softmax attention: with identical positions its output does not depend on the queries and
keys, so their rows of c_attn carry no flow and score 0 (SynFlow has no signal for them)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from suite.errors import ConfigError

BLOCK_MATRICES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # always prunable
OPTIONAL_GROUPS = {"embeddings": ("transformer.wte", "transformer.wpe"), "head": ("lm_head",)}


class LayerNorm(nn.LayerNorm):
    """LayerNorm with an optional bias; in SynFlow's linearised pass only its affine map."""

    linear = False  # set by GPT.forward(embedded=True) for the duration of one pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.linear:
            return x * self.weight + (self.bias if self.bias is not None else 0)
        return super().forward(x)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one qkv projection, SDPA with is_causal, one output projection."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.dropout = n_head, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Linear up to 4x width, GELU, Linear down."""

    def __init__(self, n_embd: int, dropout: float, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token + position embeddings, n_layer blocks, a final LayerNorm, a Linear head to the vocabulary."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float = 0.0, bias: bool = False):
        super().__init__()
        if n_embd % n_head:
            raise ConfigError(f"model.n_embd: {n_embd} is not divisible by model.n_head={n_head}")
        self.block_size, self.n_embd = block_size, n_embd
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList([Block(n_embd, n_head, dropout, bias) for _ in range(n_layer)]),
            ln_f=LayerNorm(n_embd, bias=bias),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def prunable_parameters(self, include: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
        """The block matrices, plus the optional groups named in `include` ("embeddings", "head"), in
        module order."""
        unknown = [g for g in include if g not in OPTIONAL_GROUPS]
        if unknown:
            raise ConfigError(f"prune.include: '{unknown[0]}' is not a group of gpt_char "
                              f"(valid: {', '.join(OPTIONAL_GROUPS)})")
        wanted = {m for g in include for m in OPTIONAL_GROUPS[g]}
        return {f"{name}.weight": m.weight for name, m in self.named_modules()
                if name in wanted or name.endswith(BLOCK_MATRICES) and name.startswith("transformer.h.")}

    def embedded_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """The shape of one example at the embedding output, (context, n_embd): where SynFlow's
        all-ones input goes (`forward(x, embedded=True)`)."""
        return (input_shape[0], self.n_embd)

    def forward(self, x: torch.Tensor, embedded: bool = False) -> torch.Tensor:
        """Logits (B, vocabulary, T) of token ids x (B, T); with `embedded`, x is the (B, T, n_embd)
        embedding output and the LayerNorms act as affine maps (SynFlow's linearised pass)."""
        if embedded:
            norms = [m for m in self.modules() if isinstance(m, LayerNorm)]
            for m in norms:
                m.linear = True
            try:
                return self._head(self._blocks(x))
            finally:
                for m in norms:
                    m.linear = False
        t = x.shape[1]
        if t > self.block_size:
            raise ValueError(f"GPT: a sequence of {t} tokens is longer than the context {self.block_size}")
        # a float input (the FLOPs counter's all-zero example) holds token ids as floats
        idx = x.long()
        pos = torch.arange(t, device=x.device)
        return self._head(self._blocks(self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))))

    def _blocks(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.transformer.h:
            h = block(h)
        return self.transformer.ln_f(h)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(h).transpose(1, 2)


def init_gpt2(model: nn.Module) -> None:
    """GPT-2's init as nanoGPT: Linear and Embedding weights N(0, 0.02), biases 0, LayerNorm 1/0,
    and every residual projection (c_proj) N(0, 0.02 / sqrt(2 x layers))."""
    n_layer = sum(1 for m in model.modules() if isinstance(m, Block))
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))


def gpt_char(spec, cfg) -> GPT:
    """nanoGPT's character GPT for a token dataset: vocabulary = spec.num_classes, context =
    spec.input_shape[0], sizes from the model config."""
    if len(spec.input_shape) != 1:
        raise ConfigError(f"model 'gpt_char' needs token windows (context,); dataset '{spec.name}' gives "
                          f"{tuple(spec.input_shape)}")
    return GPT(spec.num_classes, spec.input_shape[0], cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.dropout, cfg.bias)

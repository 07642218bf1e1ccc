"""Character-level text as a dataset: characters are tokens, an example is a window of
`data.context` characters whose targets are the same window shifted by one character.

- Splits: the first 90% of the text trains, the last 10% is the held-out test text (nanoGPT's
  `shakespeare_char`); `data.val_size` characters at the end of the training text are the
  validation text (a fixed part: the same for every method and seed).
- Training: windows of context + 1 characters at offsets drawn uniformly by a seeded stream of
  (seed, epoch), the same for every method at a seed; global batch j is offsets j*B..(j+1)*B and
  rank r of a DDP run takes its positions r::world_size, as the image path does.
- An "epoch" is floor(training characters / context) windows: one pass worth of tokens, so the
  epoch-based loop and the schedule points in epochs keep their meaning.
- Held out: the test (and validation) text in non-overlapping windows starting at 0, context,
  2*context, ...; every window whose targets fit in the text, i.e. (characters - 1) // context of
  them. The last (characters - 1) % context characters (at most context - 1; 51 of Tiny
  Shakespeare's 111,540) are left out. The same windows for every method and seed.
- Batches are (x, y) with x the (B, context) int64 inputs and y the (B, context) int64 targets;
  a token model returns logits (B, vocabulary, context), so the trainer's cross-entropy, accuracy
  (next-character accuracy) and per-example counts are per character without knowing it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from suite.config import DataConfig
from suite.data import Data, DataSpec, generator, shard_global_batches, split_evenly
from suite.datasets.base import Dataset
from suite.errors import ConfigError

TRAIN_FRACTION = 0.9  # the first 90% trains (nanoGPT: data[:int(n * 0.9)])


@dataclass
class TextSource:
    """One text in memory as token ids, split; `spec` counts windows, not characters."""
    spec: DataSpec
    vocab: str            # the sorted distinct characters; token i is vocab[i]
    train: Tensor         # int64 token ids of the training text (validation part removed)
    test: Tensor
    val: Tensor | None = None
    augmentable: bool = False


def windows(n_chars: int, context: int) -> int:
    """Non-overlapping windows of `context` targets in a text of `n_chars` characters."""
    return max(0, (n_chars - 1) // context)


def split_problem(name: str, n_chars: int, context: int, val_size: int) -> str | None:
    """Why a text of `n_chars` characters split 90% / 10%, `val_size` of the training part held out,
    leaves a part with no window of `context` (one line), or None."""
    n_train = int(n_chars * TRAIN_FRACTION)
    if val_size and val_size >= n_train - context:
        return (f"data.val_size: {val_size} characters leave fewer than a window of training text "
                f"({name} trains on {n_train} characters, data.context is {context})")
    if val_size and windows(val_size, context) < 1:
        return f"data.val_size: {val_size} characters hold no window of data.context={context} (at least {context + 1})"
    train, test = n_train - val_size, n_chars - n_train
    if train <= context or windows(test, context) < 1:
        return (f"data.context: {context} is longer than {name}'s training or test text "
                f"({train} / {test} characters)")
    return None


def text_source(name: str, text: str, context: int, val_size: int = 0) -> TextSource:
    """Tokenise `text` (vocabulary: its sorted distinct characters) and split it: 90% / 10%, then
    `val_size` characters off the end of the training text; one ConfigError line when a split
    holds no window."""
    problem = split_problem(name, len(text), context, val_size)
    if problem:
        raise ConfigError(problem)
    vocab = "".join(sorted(set(text)))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([lookup[c] for c in text], dtype=torch.int64)
    n_train = int(len(ids) * TRAIN_FRACTION)
    train, test = ids[:n_train], ids[n_train:]
    val = None
    if val_size:
        train, val = train[: n_train - val_size], train[n_train - val_size:]
    spec = DataSpec(name, (context,), len(vocab), len(train) // context, windows(len(test), context),
                    windows(len(val), context) if val is not None else 0)
    return TextSource(spec, vocab, train, test, val)


class TextData(Data):
    """This rank's windows of a TextSource, on the device (one gather per batch)."""

    def __init__(self, source: TextSource, **kw):
        kw["augment"] = False
        super().__init__(source, **kw)
        self.context = source.spec.input_shape[0]
        self.tokens = {"train": source.train.to(self.device), "test": source.test.to(self.device)}
        if source.val is not None:
            self.tokens["val"] = source.val.to(self.device)
        self.offsets = torch.arange(self.context + 1, device=self.device)

    def _offsets(self, n: int, *stream) -> Tensor:
        """n window starts uniform on the training text, from the seeded stream `stream`."""
        return torch.randint(0, len(self.source.train) - self.context, (n,), generator=generator(*stream))

    def train_plan(self, epoch: int) -> list[Tensor]:
        starts = self._offsets(self.steps_per_epoch * self.batch_size, "train", self.seed, epoch)
        return list(shard_global_batches(starts, self.batch_size, self.rank, self.world_size))

    def train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's shard of each global batch of `epoch`: windows at seeded offsets."""
        return self._fetch("train", self.train_plan(epoch), None)

    def scoring_batches(self, n: int) -> list[tuple[Tensor, Tensor]]:
        """n global batches of windows at offsets of a fixed seeded stream (not an epoch's), this
        rank's shard: SNIP's scoring data."""
        starts = self._offsets(n * self.batch_size, "scoring", self.seed)
        return list(self._fetch("train", list(shard_global_batches(starts, self.batch_size, self.rank,
                                                                   self.world_size)), None))

    def class_balanced(self, per_class: int) -> list[tuple[Tensor, Tensor]]:
        """GraSP's scoring data. Classes are next characters here and every window predicts many
        of them, so there is no class-balanced draw: instead `per_class` x vocabulary windows at
        seeded offsets (the same count of examples as an image set of that many classes), this
        rank taking positions rank::world_size in batches of at most local_batch_size."""
        chosen = self._offsets(per_class * self.spec.num_classes, "balanced", self.seed)
        longest = math.ceil(len(chosen) / self.world_size)
        n_batches = max(1, math.ceil(longest / self.local_batch_size))
        return list(self._fetch("train", split_evenly(chosen[self.rank::self.world_size], n_batches), None))

    def _fetch(self, split, plan, stream):
        tokens = self.tokens[split]
        for starts in plan:
            starts = starts.to(self.device)
            if split != "train":  # held-out plans hold window numbers: non-overlapping windows
                starts = starts * self.context
            chunk = tokens[starts.view(-1, 1) + self.offsets]  # (B, context + 1)
            yield chunk[:, :-1], chunk[:, 1:]


class TextDataset(Dataset):
    """A character-level text: the text itself comes from `text(cfg)`; the rest is shared."""
    metric = "test_loss"      # nats per character on the held-out text
    lower_is_better = True
    metric_label = "held-out loss (nats/char)"

    def text(self, cfg: DataConfig) -> str:
        raise NotImplementedError

    def n_chars(self, cfg: DataConfig) -> int | None:
        """Characters of the whole text, known without reading it (None when unknown)."""
        return None

    def vocab_size(self, cfg: DataConfig) -> int | None:
        """Distinct characters of the text, known without reading it (None when unknown)."""
        return None

    def known(self, cfg: DataConfig):
        n, v = self.n_chars(cfg), self.vocab_size(cfg)
        return None if n is None or v is None else ((cfg.context,), v, int(n * TRAIN_FRACTION) // cfg.context)

    def n_train(self, cfg: DataConfig) -> int | None:
        n = self.n_chars(cfg)
        return None if n is None else (int(n * TRAIN_FRACTION) - cfg.val_size) // cfg.context

    def split_problem(self, cfg: DataConfig) -> str | None:
        n = self.n_chars(cfg)
        return None if n is None else split_problem(self.name, n, cfg.context, cfg.val_size)

    def load(self, cfg: DataConfig) -> TextSource:
        return text_source(self.name, self.text(cfg), cfg.context, cfg.val_size)

    def build(self, cfg: DataConfig, **kw) -> Data:
        if cfg.loader != "device":
            raise ConfigError(f"data.loader: dataset '{self.name}' has only the device loader (got '{cfg.loader}')")
        return TextData(self.load(cfg), **kw)

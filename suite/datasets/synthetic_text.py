"""A seeded character text made in memory, for tests and the bench: words of a 12-word list, each
word chosen from two successors of the previous one, so a small model can learn it quickly."""
from __future__ import annotations

import torch

from suite.config import DataConfig
from suite.data import generator
from suite.datasets.text import TextDataset

WORDS = ("the", "king", "shall", "speak", "of", "love", "and", "war", "to", "thee", "my", "lord")
VOCAB = "".join(sorted(set("".join(WORDS) + " \n")))


def synthetic_text(n_chars: int) -> str:
    """Exactly `n_chars` characters of seeded word chains (a newline after every 8 words);
    independent of the run seed and of the global RNG."""
    choices = torch.randint(0, 2, (n_chars,), generator=generator("synthetic_text")).tolist()
    parts, word, k, length = [], 0, 0, 0
    while length < n_chars:
        word = (3 * word + 1 + choices[k % n_chars]) % len(WORDS)
        k += 1
        parts.append(WORDS[word] + ("\n" if k % 8 == 0 else " "))
        length += len(parts[-1])
    return "".join(parts)[:n_chars]


class SyntheticText(TextDataset):
    """data.synthetic_train characters of `synthetic_text` (split 90/10 like any text)."""
    name = "synthetic_text"

    def n_chars(self, cfg: DataConfig) -> int:
        return cfg.synthetic_train

    def vocab_size(self, cfg: DataConfig) -> int:
        return len(set(synthetic_text(cfg.synthetic_train)))

    def text(self, cfg: DataConfig) -> str:
        return synthetic_text(cfg.synthetic_train)

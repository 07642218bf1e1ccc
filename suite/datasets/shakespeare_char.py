"""Tiny Shakespeare as characters (char-rnn's input.txt, nanoGPT's `shakespeare_char`): 1,115,394
characters, 65 distinct; 1,003,854 train and 111,540 held out (see suite/datasets/text.py)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from suite.config import DataConfig
from suite.datasets.base import root_of
from suite.datasets.text import TextDataset
from suite.errors import ConfigError

RELATIVE = Path("tinyshakespeare") / "input.txt"  # under data.root
MD5 = "6fb458f1232090904fb40fe944165e91"
N_CHARS = 1_115_394  # bytes = characters: plain ASCII
VOCAB = 65


class ShakespeareChar(TextDataset):
    """data.root/tinyshakespeare/input.txt, checked by size and md5 (never downloaded)."""
    name = "shakespeare_char"

    def path(self, cfg: DataConfig) -> Path:
        return root_of(cfg) / RELATIVE

    def files_problem(self, cfg: DataConfig) -> str | None:
        path = self.path(cfg)
        if not path.is_file():
            return (f"Tiny Shakespeare not found: no {path} "
                    f"(set data.root to the folder holding {RELATIVE.parent}/; it cannot be downloaded)")
        try:
            raw = path.read_bytes()
        except OSError as e:
            return f"{path}: cannot be read ({e.strerror})"
        digest = hashlib.md5(raw).hexdigest()
        if len(raw) != N_CHARS or digest != MD5:
            return (f"{path}: not the Tiny Shakespeare text ({len(raw)} bytes, md5 {digest}; "
                    f"expected {N_CHARS} bytes, md5 {MD5})")
        return None

    def n_chars(self, cfg: DataConfig) -> int:
        return N_CHARS

    def vocab_size(self, cfg: DataConfig) -> int:
        return VOCAB

    def text(self, cfg: DataConfig) -> str:
        problem = self.files_problem(cfg)
        if problem:
            raise ConfigError(problem)
        return self.path(cfg).read_bytes().decode("ascii")

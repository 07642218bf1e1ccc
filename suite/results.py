"""Files on disk, the source of truth: atomic JSON, checkpoints, tensors, a lock per run folder, and
`RunFolder`, the one reader of a run folder's state (the runner, the report, the plots and the sweep
all ask it)."""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Write through a temp file in the same folder, then rename: a crash never leaves half a file. An
    error of the temp file (no space, a folder that cannot hold files) names `path`, the file we meant."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and (tmp is None or e.filename in (None, tmp, str(tmp))):
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes(tmp: str, data: bytes) -> None:
    """Write through Python's file object, so a full disk is OSError ENOSPC (torch.save and safetensors
    writing a file themselves report it as an opaque RuntimeError)."""
    with open(tmp, "wb") as f:
        f.write(data)


def _clean(obj: Any) -> Any:
    """JSON has no NaN or inf: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(_clean(r)) + "\n" for r in records))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_predictions(path: Path, array) -> None:
    """A numpy array as a .npy file, written atomically (the per-example test predictions)."""

    import numpy as np
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    data = buffer.getvalue()
    atomic_write(path, lambda tmp: write_bytes(tmp, data))


def read_predictions(path: Path):
    """A run's per-example test predictions: (predicted classes, labels) as uint8 numpy arrays."""
    import numpy as np
    array = np.load(Path(path), allow_pickle=False)
    return array[0], array[1]


def save_tensors(path: Path, tensors: dict) -> None:
    """safetensors file (bool masks are stored as uint8 0/1)."""
    import torch  # late, here and below: the report and the sweep read folders without torch
    from safetensors.torch import save
    plain = {k: (v.to(torch.uint8) if v.dtype == torch.bool else v).detach().contiguous().cpu()
             for k, v in tensors.items()}
    data = save(plain)
    atomic_write(path, lambda tmp: write_bytes(tmp, data))


def previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint before `path` is kept: `checkpoint.pt` -> `checkpoint.prev.pt`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write the new checkpoint, keeping the one it replaces as `<name>.prev.pt`: a checkpoint damaged
    on disk later leaves the one before it to resume from."""
    import torch
    path = Path(path)

    def write(tmp: str) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes(tmp, buffer.getbuffer())
        if path.exists():  # a kill right after this leaves only .prev.pt: the loader falls back to it
            os.replace(path, previous_checkpoint(path))
    atomic_write(path, write)


def load_checkpoint(path: Path, device) -> dict:
    import torch
    device = torch.device(device)  # a 2-process CPU group reports cpu:<rank>, which torch.load cannot map
    return torch.load(path, map_location="cpu" if device.type == "cpu" else device, weights_only=True)


class RunLocked(RuntimeError):
    """Another process holds this run folder."""


class RunLost(RunLocked):
    """The run folder was deleted or replaced while this process held its lock: another process may
    hold the new one, so this one stops before writing anything more."""


class RunLock:
    """An exclusive, non-blocking flock on `<run dir>/.lock`; released when the process dies. Set
    `remove` once the folder is finished: the lock file goes with the release, leaving only results."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None
        self.remove = False

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLocked(f"run is locked by another process: {self.path.parent}") from None
            if self._is_on_disk(fd):
                break
            # the holder removed the file (a finished run) after we opened it: that lock is no
            # longer the folder's, so take the one on disk now
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _is_on_disk(self, fd: int) -> bool:
        """True when `.lock` on disk is the file open as `fd`."""
        held = os.fstat(fd)
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def check(self) -> None:
        """Raise RunLost unless `.lock` on disk is still the file this process locked: a folder deleted
        (rm -rf) or replaced while the run writes to it would otherwise let a second process take a new
        lock there, and both would finish into one folder."""
        if self._fd is not None and not self._is_on_disk(self._fd):
            raise self._lost()

    def check_error(self, error: OSError) -> None:
        """After a write failed: RunLost if the folder went, even when rm -rf has removed the file the
        write needed but not yet `.lock` (a file of a locked folder is never missing otherwise)."""
        self.check()
        name = getattr(error, "filename", None)
        if self._fd is not None and isinstance(error, FileNotFoundError) and name is not None \
                and Path(name).parent == self.path.parent:
            raise self._lost() from None

    def _lost(self) -> RunLost:
        return RunLost(f"the run folder {self.path.parent} was deleted or replaced while this run wrote to "
                       f"it; stopped without writing more (run the same command again)")

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            if self.remove and self._is_on_disk(self._fd):
                with contextlib.suppress(OSError):  # a read-only folder keeps its lock file: harmless
                    self.path.unlink()  # while still held: a process that opened it sees it gone
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_held(folder: Path) -> bool:
    """True when another process holds `<folder>/.lock` (RunLock's flock). Probing takes the lock for
    an instant, so only the dry run asks; a real run lets RunLock decide."""
    path = Path(folder) / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our lock if we got it
    return False


# --- the run folder ------------------------------------------------------------------------------

# A result.json counts only with these fields set; accuracies must be finite numbers.
RESULT_FIELDS = ("method", "model", "dataset", "seed", "experiment", "target_sparsity", "achieved_sparsity",
                 "final_test_accuracy")
FINITE_FIELDS = ("target_sparsity", "achieved_sparsity", "final_test_accuracy")
FINAL_FILES = ("metrics.jsonl", "mask.safetensors", "model.safetensors")  # written before result.json
ROUND_FILES = ("metrics.jsonl", "mask.safetensors")  # a chain's round_<r>/ folder keeps no weights
CHECKPOINT_KEYS = ("round", "epoch", "round_started", "records", "rewind", "epochs_trained", "wall_time_s",
                   "model", "optimizer", "mask", "threshold", "rng", "experiment", "seed")
MOVED_ASIDE = ".old-"  # `<run>.old-<timestamp>`: a run moved aside by --force; readers skip these folders
ROUND_FINAL_FILES = ("metrics.jsonl", "mask.safetensors")  # what round_<r>/ holds beside its result.json
_MOVED_ASIDE_NAME = re.compile(r"seed_\d+\.old-\d{8}-\d{6}(-\d+)?")  # only a seed folder is ever moved aside
_SEED_DIR = re.compile(r"seed_(\d+)")
_ROUND_DIR = re.compile(r"round_(\d+)")
MAX_HEADER = 100_000_000  # bytes: a safetensors header beyond this is damaged (a mask's is a few KiB)


class InvalidResult(ValueError):
    """A result.json that does not parse or lacks what a finished result has."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_result(data: Any) -> None:
    """Raise InvalidResult naming the first problem of a parsed result.json."""
    if not isinstance(data, dict):
        raise InvalidResult("not a JSON object")
    if data.get("status", "finished") != "finished":
        raise InvalidResult(f"status is {data.get('status')!r}, not 'finished'")
    missing = [k for k in RESULT_FIELDS if data.get(k) is None]
    if missing:
        raise InvalidResult(f"lacks {', '.join(missing)}")
    for key in FINITE_FIELDS:
        value = data[key]
        if not _is_number(value) or not math.isfinite(value):
            raise InvalidResult(f"{key} is {value!r}, not a finite number")
    if not isinstance(data["seed"], int) or isinstance(data["seed"], bool):
        raise InvalidResult(f"seed is {data['seed']!r}, not an integer")
    check_exact_count(data)


def check_exact_count(data: dict) -> None:
    """The achieved sparsity is the target's exact count: round(target * N) zeros over the N prunable
    weights (suite.masks.n_pruned), and achieved_sparsity says that count. A result without the counts
    (older files) must state its target to within 1e-6."""
    target, achieved = data["target_sparsity"], data["achieved_sparsity"]
    total, remaining = data.get("prunable_total"), data.get("prunable_remaining")
    if not (_is_number(total) and _is_number(remaining)):
        if abs(achieved - target) > 1e-6:
            raise InvalidResult(f"achieved sparsity {achieved:.6f} is not its target {target:.6f}")
        return
    if not (isinstance(total, int) and isinstance(remaining, int) and 0 <= remaining <= total and total > 0):
        raise InvalidResult(f"prunable_remaining {remaining!r} of prunable_total {total!r} is not a count")
    zeros, expected = total - remaining, round(target * total)
    science = data.get("science") if isinstance(data.get("science"), dict) else {}
    if science.get("prune.structure") == "channel":  # whole channels: at most the target's count, never more
        if zeros > expected:
            raise InvalidResult(f"achieved sparsity {achieved:.6f} ({zeros} of {total} weights pruned) exceeds its "
                                f"target {target:.6f} ({expected} at most, in whole channels)")
    elif zeros != expected:
        raise InvalidResult(f"achieved sparsity {achieved:.6f} ({zeros} of {total} weights pruned) is not its "
                            f"target {target:.6f} ({expected} pruned by the exact-count rule)")
    if abs(achieved - zeros / total) > 1e-9:
        raise InvalidResult(f"achieved_sparsity {achieved!r} does not match its counts ({zeros} of {total} pruned)")


def check_safetensors_header(path: Path) -> dict:
    """The header of a safetensors file whose header is readable JSON of the length its first 8 bytes
    give (the tensors are not read); InvalidResult naming the file otherwise, never a MemoryError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            text = f.read(n) if 2 <= n <= min(size - 8, MAX_HEADER) else None
    except OSError as e:
        raise InvalidResult(f"{path.name} is unreadable ({e.strerror})") from None
    if text is None:
        raise InvalidResult(f"{path.name} is damaged (header length {n} in a file of {size} bytes)")
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise InvalidResult(f"{path.name} is damaged (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise InvalidResult(f"{path.name} is damaged (its header is not a JSON object)")
    return header


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in a safetensors file, from its header (`check_safetensors_header`)."""
    header = check_safetensors_header(path)
    try:
        return {n: tuple(int(d) for d in info["shape"]) for n, info in header.items() if n != "__metadata__"}
    except (KeyError, TypeError, ValueError):
        raise InvalidResult(f"{Path(path).name} is damaged (a tensor without a shape)") from None


_MASK_COUNTS: dict[tuple, tuple[int, int]] = {}  # (path, mtime, size) -> counts: the report asks once per file


def mask_counts(path: Path) -> tuple[int, int]:
    """(live entries, all entries) of a mask.safetensors, read without torch; InvalidResult when it
    does not load."""
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key not in _MASK_COUNTS:
            import numpy as np
            from safetensors.numpy import load_file
            tensors = load_file(str(path)).values()
            _MASK_COUNTS[key] = (sum(int(np.count_nonzero(t)) for t in tensors), sum(int(t.size) for t in tensors))
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise InvalidResult(f"{path.name} is unreadable ({type(e).__name__})") from None
    return _MASK_COUNTS[key]


def check_mask_counts(path: Path, data: dict) -> None:
    """The mask beside a result holds the counts the result states (prunable_remaining live of
    prunable_total): a result whose mask was replaced is not that result."""
    total, remaining = data.get("prunable_total"), data.get("prunable_remaining")
    if not (isinstance(total, int) and isinstance(remaining, int)):
        return  # an older result without counts: nothing to compare
    alive, entries = mask_counts(path)
    if (alive, entries) != (remaining, total):
        raise InvalidResult(f"{path.name} holds {alive} live of {entries} weights, not the result's {remaining} of "
                            f"{total} (a replaced mask?)")


def _run_folder_of(result_path: Path) -> tuple[Path, bool]:
    """The run folder a result.json belongs to, and whether it is a round's (round_<r>/result.json)."""
    folder = Path(result_path).parent
    if _ROUND_DIR.fullmatch(folder.name):
        return folder.parent, True
    return folder, False


def check_result_folder(path: Path, data: dict) -> None:
    """A result.json counts only with its folder: the files written before it are there (a round's
    mask and metrics; a run's metrics, mask and weights), the mask's header is sound, and the folder
    is the one this result was written to (`<...>-<experiment>/seed_<seed>`: a seed folder copied to
    another seed, or into another experiment, is not that result)."""
    path = Path(path)
    run, is_round = _run_folder_of(path)
    needed = ROUND_FINAL_FILES if is_round else FINAL_FILES
    missing = [name for name in needed if not (path.parent / name).is_file()]
    if missing:
        raise InvalidResult(f"no {', '.join(missing)} beside it")
    check_safetensors_header(path.parent / "mask.safetensors")
    check_mask_counts(path.parent / "mask.safetensors", data)
    seed_dir = _SEED_DIR.fullmatch(run.name)
    if seed_dir is None:
        return  # not a folder named by suite.experiment.run_dir: nothing to match
    if int(seed_dir.group(1)) != data["seed"]:
        raise InvalidResult(f"holds seed {data['seed']}'s result, not this folder's seed {seed_dir.group(1)} "
                            f"(a copied folder? the same command trains it)")
    if not run.parent.name.endswith(f"-{data['experiment']}"):
        raise InvalidResult(f"holds experiment {data['experiment']}'s result, not {run.parent.name}'s "
                            f"(a copied folder? the same command trains it)")


def read_result(path: Path) -> dict:
    """A result.json that passes check_result and whose folder holds what it should (check_result_folder);
    InvalidResult says why not (never a traceback)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidResult("missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InvalidResult(f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    check_result(data)
    check_result_folder(path, data)
    return data


def read_metrics(path: Path) -> list[dict]:
    """Epoch records of a metrics.jsonl in training order, one per (round, epoch), last write wins
    (a resumed run may repeat an epoch); unreadable lines (a torn last line) are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    records: dict[tuple, dict] = {}
    for line in lines:
        try:
            rec = json.loads(line)
            key = (int(rec.get("round") or 0), int(rec["epoch"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        records[key] = rec
    return [records[k] for k in sorted(records)]


@dataclass(frozen=True)
class FolderStatus:
    state: str        # finished | running | failed | invalid | partial | pending
    detail: str = ""


class RunFolder:
    """One run folder: what its files say, and the few moves that keep it consistent."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.result_path = self.path / "result.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.failed_path = self.path / "failed.json"

    # --- reading ---------------------------------------------------------------------------------

    def read_result(self) -> dict:
        return read_result(self.result_path)

    def result_problem(self) -> str | None:
        """Why result.json does not count (None when it does)."""
        try:
            self.read_result()
        except InvalidResult as e:
            return f"{self.result_path}: {e}"
        return None

    def is_round(self) -> bool:
        """A chain's `round_<r>/` folder (inside a seed folder), not a seed folder."""
        name = self.path.name
        return name.startswith("round_") and name[len("round_"):].isdigit()

    def missing_finals(self) -> list[str]:
        """Files a finished run (or round) has next to result.json that are not there."""
        return [name for name in (ROUND_FILES if self.is_round() else FINAL_FILES) if not (self.path / name).is_file()]

    def read_mask(self) -> dict:
        """The final mask (name -> bool tensor, on the CPU) of a finished run or round."""
        from safetensors.torch import load_file
        return {n: m.bool() for n, m in load_file(str(self.path / "mask.safetensors")).items()}

    def finished(self) -> bool:
        return self.result_problem() is None and not self.missing_finals()

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics_path)

    def failure_reason(self) -> str | None:
        """The reason in failed.json, or None when there is none."""
        try:
            data = json.loads(self.failed_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError):
            return "failed.json is unreadable"
        return str(data.get("reason", "no reason given")) if isinstance(data, dict) else "failed.json is unreadable"

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file() or previous_checkpoint(self.checkpoint_path).is_file()

    def locked(self) -> bool:
        return lock_held(self.path)

    def status(self) -> FolderStatus:
        """The state as the files (and the lock) say it."""
        if self.finished():
            return FolderStatus("finished")
        if self.locked():
            return FolderStatus("running", "locked by another process")
        reason = self.failure_reason()
        if reason is not None:
            return FolderStatus("failed", reason)
        if self.result_path.exists():
            problem = self.result_problem()
            if problem is None:
                problem = f"{self.path}: result.json without {', '.join(self.missing_finals())}"
            how = "the same command resumes from the checkpoint" if self.has_checkpoint() else \
                "the same command runs it again"
            return FolderStatus("invalid", f"{problem}; {how}")
        records = self.read_metrics()
        if records or self.has_checkpoint():
            rounds = sorted(p.parent.name for p in self.path.glob("round_*/result.json"))
            last = records[-1] if records else None
            where = f"round {last.get('round', 0)} epoch {last['epoch']}" if last else "a checkpoint"
            finished = f"; {len(rounds)} rounds finished" if rounds else ""
            return FolderStatus("partial", f"stopped after {where}{finished}")
        return FolderStatus("pending")

    # --- keeping it consistent (the caller holds the lock) ----------------------------------------

    def remove_orphans(self) -> list[Path]:
        """Delete temp files a killed atomic_write left behind (here and in round_*/)."""
        found = [p for folder in (self.path, *self.path.glob("round_*"))
                 for p in folder.glob(".*.tmp") if p.is_file()]
        for p in found:
            p.unlink(missing_ok=True)
        return found

    def remove_checkpoints(self) -> None:
        for p in (self.checkpoint_path, previous_checkpoint(self.checkpoint_path)):
            p.unlink(missing_ok=True)

    def move_aside(self) -> Path | None:
        """Move every file of this run but the lock to `<run>.old-<timestamp>`, so a new run never
        mixes with the old one's files; None when there was nothing to move."""
        entries = [p for p in self.path.iterdir() if p.name != ".lock"] if self.path.is_dir() else []
        if not entries:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}{MOVED_ASIDE}{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}{MOVED_ASIDE}{stamp}-{n}")
        target.mkdir()
        for p in aside_order(entries):
            shutil.move(str(p), str(target / p.name))
        return target


def aside_order(entries: list[Path]) -> list[Path]:
    """The order move_aside moves a run's files in: result.json (the commit point) first, so a kill
    part-way leaves a folder that is no longer finished, never a finished one with files missing; then
    the round results; then the rest."""
    def rank(p: Path) -> tuple:
        return (p.name != "result.json", _ROUND_DIR.fullmatch(p.name) is None, p.name)
    return sorted(entries, key=rank)


def moved_aside(name: str) -> bool:
    """True for a folder that --force moved aside, `seed_<n>.old-<timestamp>` (readers leave it out);
    a folder above the results that happens to hold `.old-` in its name is not one."""
    return _MOVED_ASIDE_NAME.fullmatch(name) is not None


# --- checkpoints with a fallback ----------------------------------------------------------------

class BadCheckpoint(ValueError):
    """A checkpoint that cannot be used; the message says why."""


def read_checkpoint(path: Path, device, expect: dict, check=None) -> dict:
    """Load a checkpoint and check it has every key and belongs to `expect` (experiment, seed);
    `check(saved)` may raise BadCheckpoint for what only the caller can judge (tensor shapes)."""
    try:
        saved = load_checkpoint(path, device)
    except FileNotFoundError:
        raise BadCheckpoint("missing") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        text = str(e).splitlines()[0] if str(e) else ""
        raise BadCheckpoint(f"unreadable ({type(e).__name__}: {text[:160]})") from None
    if not isinstance(saved, dict):
        raise BadCheckpoint("not a checkpoint of this suite")
    missing = [k for k in CHECKPOINT_KEYS if k not in saved]
    if missing:
        raise BadCheckpoint(f"lacks {', '.join(missing)}")
    for key, value in expect.items():
        if saved[key] != value:
            raise BadCheckpoint(f"belongs to {key} {saved[key]!r}, not {value!r}")
    if check is not None:
        check(saved)
    return saved


def load_resumable(folder: RunFolder, device, expect: dict, check=None,
                   tidy: bool = True) -> tuple[dict | None, str | None]:
    """The checkpoint to resume from: checkpoint.pt, else checkpoint.prev.pt, else None (start over);
    plus a warning line whenever one was unusable. With `tidy` (the main process, before the other
    ranks read) a damaged file is deleted, so the next save cannot rotate it into .prev.pt, and a
    .prev.pt resumed from becomes checkpoint.pt."""
    current, prev = folder.checkpoint_path, previous_checkpoint(folder.checkpoint_path)
    if not current.exists() and not prev.exists():
        return None, None
    problems = []
    for path in (current, prev):
        if not path.exists():
            continue
        try:
            saved = read_checkpoint(path, device, expect, check)
        except BadCheckpoint as e:
            problems.append(f"{path.name} {e}")
            if tidy:
                path.unlink(missing_ok=True)
            continue
        if path == prev and tidy:
            os.replace(prev, current)  # it is the current one now
        if not problems:
            return saved, None
        return saved, (f"warning: {'; '.join(problems)}: resuming from the previous checkpoint "
                       f"(round {saved['round']} epoch {saved['epoch']}) in {folder.path}")
    return None, f"warning: {'; '.join(problems)}: no usable checkpoint, starting {folder.path} over"


# --- paths at the command-line boundary -----------------------------------------------------------

def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """A folder results can go in (it may not exist yet); else one ConfigError line naming the path.
    Asked before any data is loaded."""
    from suite.errors import ConfigError
    if str(path).startswith("~"):  # `--out=~/x`: the shell expands ~ only at the start of a word
        raise ConfigError(f"{what} {path}: starts with '~', which the shell did not expand (after '=' it "
                          f"does not); write `{what} ~/...` with a space, or the full path")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path}: is a file, not a folder")
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            raise ConfigError(f"{what} {path}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {path}: {existing} is a file, so no folder can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: {existing} is not writable")
    return path

"""W&B for the trainer: one run per training run, its name, group, id and config, the epoch records as
it logs them, and the final result as its summary. A tracker failure is a warning, never the run's results."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

from suite import config as C
from suite import experiment as E
from suite.results import atomic_write_text


def _log(accelerator, text: str) -> None:
    if accelerator.is_main_process:
        print(text, file=sys.stderr, flush=True)


def log_epoch(acc, record: dict, step: int) -> None:
    """Mirror an epoch's record to the trackers (W&B), per-layer sparsity as its own panel group."""
    if not acc.trackers:
        return
    flat = {k: v for k, v in record.items() if k != "layer_sparsity" and v is not None}
    flat.update({f"layer_sparsity/{name}": s for name, s in record["layer_sparsity"].items()})
    flat["epochs_trained"] = step  # cumulative over LTH rounds: the W&B step never goes back
    acc.log(flat, step=step)


def wandb_mode(cfg: E.Config) -> str:
    """online, offline or disabled: W&B's own WANDB_MODE wins over the config's wandb.mode."""
    return os.environ.get("WANDB_MODE", cfg.wandb.mode)


SWEEP_ENV = "PP_SWEEP"  # set by launch/sweep.py for its runs: the sweep's name becomes a W&B tag


# per LTH round: round_<r>/<key> in the summary; nothing chosen by looking at the test set
ROUND_SUMMARY = ("final_test_accuracy", "best_val_accuracy", "test_accuracy_at_best_val", "achieved_sparsity",
                 "target_sparsity", "total_epochs_trained", "train_cost_x_dense_cycle")
RUN_ID_FILE = "wandb-id"  # in the run folder: the nonce a resumed run's W&B id is made from


def wandb_group(model: str, dataset: str, method: str, sparsity: float, experiment: str) -> str:
    """The W&B group of a training run: `<model>-<data>-<method>-s<sparsity>-<experiment hash>`,
    readable, and one group per experiment (its seeds), as the run folders are."""
    return f"{model}-{dataset}-{method}-s{sparsity:g}-{experiment}"


def wandb_run_id(cfg: E.Config, run_dir: Path) -> str:
    """`<experiment>-<seed>-<token>`, unique per run folder: the token hashes the folder's absolute path
    with a nonce made when the folder's run first starts (kept in the folder, so a resumed run keeps its
    id; --force moves it aside with the old files, so a rerun gets a new one). The caller holds the lock."""
    path = Path(run_dir) / RUN_ID_FILE
    try:
        nonce = path.read_text().strip()
    except FileNotFoundError:
        nonce = ""
    if not nonce:
        nonce = secrets.token_hex(8)
        atomic_write_text(path, nonce + "\n")
    token = hashlib.sha256(f"{Path(run_dir).resolve()}\0{nonce}".encode()).hexdigest()[:8]
    return f"{E.experiment_hash(cfg)}-{cfg.seed}-{token}"


def wandb_dir(run_dir: Path) -> Path:
    """Where W&B writes: WANDB_DIR when set, else the runs folder (`<out>/wandb/`), so that one
    `wandb sync <out>/wandb/offline-run-*` uploads a whole study."""
    return Path(os.environ.get("WANDB_DIR") or Path(run_dir).parents[1])


def wandb_init_kwargs(cfg: E.Config, run_dir: Path, mode: str) -> dict:
    """One W&B run per training run, named and grouped by its experiment so a dashboard groups the
    seeds and tells experiments apart; a sweep's runs carry its name as their job type and a tag.
    W&B's own variables win: WANDB_RUN_GROUP, WANDB_TAGS (added), WANDB_ENTITY, WANDB_DIR."""
    sweep, experiment = os.environ.get(SWEEP_ENV), E.experiment_hash(cfg)
    name = f"{cfg.method}-s{cfg.prune.target_sparsity:g}-{experiment}-seed{cfg.seed}"
    group = wandb_group(cfg.model.name, cfg.data.name, cfg.method, cfg.prune.target_sparsity, experiment)
    tags = [cfg.model.name, cfg.data.name, cfg.method, *filter(None, [sweep])]
    tags += [t for t in (t.strip() for t in os.environ.get("WANDB_TAGS", "").split(",")) if t and t not in tags]
    directory = wandb_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    kwargs = {"name": name, "group": os.environ.get("WANDB_RUN_GROUP") or group, "tags": tags,
              "dir": str(directory), "mode": mode, "id": wandb_run_id(cfg, run_dir), "resume": "allow",
              "job_type": sweep or "train"}
    if cfg.wandb.entity and not os.environ.get("WANDB_ENTITY"):
        kwargs["entity"] = cfg.wandb.entity
    if mode == "online" and "WANDB_INIT_TIMEOUT" not in os.environ:
        import wandb
        kwargs["settings"] = wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT)
    return kwargs


def wandb_project(cfg: E.Config) -> str:
    """WANDB_PROJECT when set, else wandb.project."""
    return os.environ.get("WANDB_PROJECT") or cfg.wandb.project


WANDB_INIT_TIMEOUT = 30.0  # s: W&B's own default (90 s) leaves a run silent for minutes without a network


def wandb_config(cfg: E.Config) -> dict:
    """The run's config for W&B: every section but the method settings the method does not read (the
    other methods' sections would only clutter the dashboard), plus the experiment hash."""
    from suite.methods import method_class, method_sections, reads
    read = reads(method_class(cfg.method))
    tree = C.to_dict(cfg)
    for section in method_sections():
        kept = {k: v for k, v in tree[section].items() if any(f"{section}.{k}".startswith(p) for p in read)}
        if kept:
            tree[section] = kept
        else:
            del tree[section]
    return {"experiment": E.experiment_hash(cfg), **tree}


def start_tracking(accelerator, cfg: E.Config, run_dir: Path, mode: str) -> None:
    """Start W&B on the main process. Online W&B that cannot start (no API key, no network) says why in
    one line and logs offline instead, so the run and its results go on."""
    kwargs = wandb_init_kwargs(cfg, run_dir, mode)
    try:
        accelerator.init_trackers(wandb_project(cfg), config=wandb_config(cfg), init_kwargs={"wandb": kwargs})
        return
    except Exception as e:  # wandb raises UsageError, CommError, AuthenticationError, ...
        accelerator.trackers = []  # Accelerate keeps a tracker without a run: finishing it would fail too
        if mode != "online":
            raise
        cause = " ".join(str(e).split()) or "no message"
        _log(accelerator, f"warning: W&B online could not start ({type(e).__name__}: {cause[:300]}); logging "
                          f"offline to {Path(kwargs['dir']) / 'wandb'} instead (upload later with `wandb sync`; set "
                          f"wandb.mode=offline to skip the attempt)")
    import wandb
    wandb.teardown()
    kwargs.pop("settings", None)
    # W&B's service may still hold the failed online run's id ("run ID ... is in use"): the offline
    # copy takes an id of its own, still one per run folder, so a resumed fallback finds it again
    offline = {**kwargs, "mode": "offline", **({"id": f"{kwargs['id']}-offline"} if kwargs.get("id") else {})}
    try:
        accelerator.init_trackers(wandb_project(cfg), config=wandb_config(cfg), init_kwargs={"wandb": offline})
    except Exception as e:
        accelerator.trackers = []
        _log(accelerator, f"warning: W&B offline could not start either ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]}); this run goes on without W&B")


def record_summary(accelerator, cfg: E.Config, run_dir: Path, result: dict) -> None:
    """The final result as the W&B summary, and each LTH round's under `round_<r>/` (so round 7 can be
    charted); a tracker failure is a warning, never the run's results."""
    summary = {k: v for k, v in result.items() if k not in ("config", "layer_sparsity")}
    try:
        for path in sorted(run_dir.glob("round_*/result.json")):
            rec = json.loads(path.read_text())
            summary.update({f"round_{rec['round']}/{k}": rec.get(k) for k in ROUND_SUMMARY})
        tracker = accelerator.get_tracker("wandb", unwrap=True)
        tracker.summary.update(summary)
        if cfg.wandb.log_mask:
            import wandb
            artifact = wandb.Artifact(f"mask-{tracker.id}", type="mask")
            artifact.add_file(str(run_dir / "mask.safetensors"))
            tracker.log_artifact(artifact)
    except Exception as e:
        _log(accelerator, f"warning: W&B summary not recorded ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                          f"the results are in {run_dir}")


def finish_tracking(accelerator, run_dir: Path) -> None:
    """Finish this run's trackers but keep the process group: a script may run several experiments in
    one job (Accelerator.end_training would destroy the group)."""
    for tracker in accelerator.trackers:
        try:
            tracker.finish()
        except Exception as e:  # an upload that fails at the end: the run's files are on disk
            _log(accelerator, f"warning: W&B did not finish ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]}); the results are in {run_dir}")
    accelerator.trackers = []

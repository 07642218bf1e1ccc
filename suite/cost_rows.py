"""cost.json dicts into table rows, without torch: the report reads measured costs with these, and
python -m suite.cost prints its own table with them."""
from __future__ import annotations

BATCHES = (1, 32, 256)  # the batch sizes python -m suite.cost measures


def cost_batches(costs: list[dict]) -> list[int]:
    """The batch sizes any of these cost.json dicts measured, ascending (a file may have other ones than
    this version's BATCHES)."""
    found = {int(b) for c in costs for b in c.get("batches", BATCHES)
             if isinstance(b, int) or (isinstance(b, str) and b.isdigit())}
    return sorted(found)


def cost_rows(costs: list[dict]) -> list[dict]:
    """One row per run and format of cost.json dicts: latency at each batch, speed-up over the dense
    model on the same device (dense_masked latency / the format's; dense_masked runs the dense
    arithmetic) and size ratio (the format's saved bytes / dense_masked's). Skipped and mismatched
    formats keep a row with their status and reason, without numbers."""
    rows = []
    batches = cost_batches(costs)
    for c in costs:
        dense = c["formats"].get("dense_masked", {})
        for name, f in c["formats"].items():
            row = {"run": c.get("run"), "experiment": c.get("experiment"), "seed": c.get("seed"),
                   "method": c.get("method"), "model": c.get("model"),
                   "structure": c.get("structure"), "sparsity": c.get("achieved_sparsity"),
                   "device": c.get("device"), "threads": c.get("threads"), "format": name,
                   "status": f.get("status"), "reason": f.get("reason"), "max_abs_diff": f.get("max_abs_diff"),
                   "noisy": bool(c.get("noisy"))}  # an older cost.json has no verdict: not flagged
            ok = f.get("status") == "ok" and dense.get("status") == "ok"
            for b in batches:  # every row has every batch size of the table: None where this run has none
                mine, base = f.get("latency_s", {}).get(str(b)), dense.get("latency_s", {}).get(str(b))
                row[f"latency_ms_b{b}"] = mine * 1e3 if ok and mine else None
                row[f"speedup_b{b}"] = base / mine if ok and mine and base else None
            row["size_bytes"] = f.get("size_bytes")
            row["size_ratio"] = (f["size_bytes"] / dense["size_bytes"]
                                 if f.get("size_bytes") and dense.get("size_bytes") else None)
            row["peak_memory_bytes"] = f.get("peak_memory_bytes")
            rows.append(row)
    return rows

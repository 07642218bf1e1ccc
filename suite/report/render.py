"""A report as text for people and machines: Markdown, LaTeX (booktabs), CSV, JSON; and its W&B mirror."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tabulate import tabulate

from suite.report.build import Report, results_sentence
from suite.report.fmt import value_text
from suite.report.load import Group
from suite.report.tables import Table

def _display(table: Table) -> tuple[list[str], list[list[str]], list[str]]:
    headers = [c.header for c in table.columns]
    body = [[c.show(r) for c in table.columns] for r in table.rows]
    return headers, body, [c.align for c in table.columns]


def render_markdown(report: Report) -> str:
    m = report.meta
    out = [f"# Pruning report: {m['runs_dir']}", ""]
    if m.get("headline"):
        out += [f"- {line}" for line in m["headline"]] + [""]
    out += [f"{results_sentence(m)}; reference method "
            f"'{m['reference']}'; alpha = {m['alpha']:g}; equivalence margin ±{m['margin']:g} points; "
            f"multiple comparisons: {m['correction']}.", ""]
    out += [f"> {line}" for line in m.get("warnings", [])] + ([""] if m.get("warnings") else [])
    out += [*m.get("declaration", []), ""] if m.get("declaration") else []
    out += render_tables_markdown(report)
    if m.get("plots"):
        out += ["## Plots", ""] + [f"- {p}" for p in m["plots"]] + [""]
    return "\n".join(out)


def render_tables_markdown(report: Report, level: str = "##") -> list[str]:
    out: list[str] = []
    for i, table in enumerate(report.tables, 1):
        out += [f"{level} {i}. {table.title}", "", f"*{table.caption}*", ""]
        if not table.rows:
            out += [f"({table.empty})", ""]
        elif table.line is not None:
            out += [f"- {table.line(r)}" for r in table.rows] + [""]
        else:
            shown = _constant_columns_apart(table)
            if shown.caption != table.caption:
                out[-2] = f"*{shown.caption}*"
            for part in _main_and_detail(shown):
                headers, body, align = _display(part)
                if part is not shown:
                    out += [f"*{part.title}*", ""]
                out += [tabulate(body, headers, tablefmt="github", disable_numparse=True, colalign=align), ""]
    return out


def _constant_columns_apart(table: Table) -> Table:
    """The table without its 'varies' columns whose value is the same on every row (one data set and model):
    the caption says them once instead."""
    constant = [c for c in table.columns if c.paper == "varies" and len({c.show(r) for r in table.rows}) < 2]
    columns = [c for c in table.columns if c not in constant and c.paper != "data"]
    if len(columns) == len(table.columns):
        return table
    extra = "; ".join(f"{c.header}: {c.show(table.rows[0])}" for c in constant)
    return dataclasses.replace(table, columns=columns,
                               caption=table.caption + (f" ({extra}, on every row.)" if extra else ""))


def _main_and_detail(table: Table) -> list[Table]:
    """A wide table as a short main table (its `main` columns) and a detail table holding every other column,
    each row named again by the main table's first `keys` columns; a table without `main` as it is."""
    if not table.main:
        return [table]
    main = [c for c in table.columns if c.header in table.main]
    keys = main[:table.keys]
    rest = [c for c in table.columns if c not in main]
    if not rest:
        return [table]
    return [dataclasses.replace(table, columns=main),
            dataclasses.replace(table, columns=keys + rest, title=f"{table.title}: details")]


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"$<$", ">": r"$>$"}  # text-mode < and > print as inverted marks in OT1
_LATEX_UNICODE = {"–": "--", "—": "---", "±": r"$\pm$", "Δ": r"$\Delta$", "≈": r"$\approx$", "−": "$-$",
                  "→": r"$\to$", "·": r"$\cdot$", "≥": r"$\geq$", "’": "'"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials, then spell the few unicode signs the report uses in LaTeX."""
    text = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    for uni, tex in _LATEX_UNICODE.items():
        text = text.replace(uni, tex)
    return text


def _paper_columns(table: Table) -> Table:
    """The columns a paper prints: 'no' columns left out (they stay in CSV/JSON), 'varies' ones only
    when the rows differ in them (one data set and model go in the caption instead)."""
    keep = []
    for c in table.columns:
        if c.paper in ("no", "data"):
            continue
        if c.paper == "varies" and len({c.show(r) for r in table.rows}) < 2:
            continue
        keep.append(c)
    constant = [c for c in table.columns if c.paper == "varies" and c not in keep and table.rows]
    extra = "; ".join(f"{c.header}: {c.show(table.rows[0])}" for c in constant)
    return dataclasses.replace(table, columns=keep, caption=table.caption + (f" ({extra}.)" if extra else ""))


def render_latex(report: Report) -> str:
    m = report.meta
    out = [f"% Pruning report: {latex_escape(m['runs_dir'])} (generated by python -m suite.report)",
           r"% Needs \usepackage{booktabs} in the preamble. Every column of a table is in --format csv/json.", ""]
    for table in report.tables:
        if not table.rows:
            out += [f"% {table.title}: {latex_escape(table.empty)}", ""]
            continue
        headers, body, align = _display(_paper_columns(table))
        # tabulate escapes the LaTeX specials; the unicode signs are spelt out after it.
        tab = tabulate(body, headers, tablefmt="latex_booktabs", disable_numparse=True, colalign=align)
        for uni, tex in _LATEX_UNICODE.items():
            tab = tab.replace(uni, tex)
        out += [r"\begin{table}[htbp]", r"\centering", r"\small",
                rf"\caption{{{latex_escape(table.title)}. {latex_escape(_paper_columns(table).caption)}}}",
                rf"\label{{tab:pp-{table.name.replace('_', '-')}}}", tab, r"\end{table}", ""]
    return "\n".join(out)


def _plain(value: Any) -> Any:
    """A JSON-safe value: NaN becomes null, numpy scalars become Python numbers."""
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def render_json(report: Report) -> str:
    meta = {k: v for k, v in report.meta.items() if k != "recorded"}
    tree: dict = {"meta": _plain({**meta, "captions": {t.name: t.caption for t in report.tables}})}
    for table in report.tables:
        tree[table.name] = _plain(table.rows)
    return json.dumps(tree, indent=2, allow_nan=False) + "\n"


def _csv_cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={value_text(v)}" for k, v in value.items())
    return repr(value) if isinstance(value, float) else str(value)


def table_csv(table: Table) -> str:
    """One table as CSV: its own columns only, raw numbers (floats as repr, so they round-trip)."""
    columns: list[str] = []
    for row in table.rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in table.rows:
        writer.writerow([_csv_cell(row[k]) if k in row else "" for k in columns])
    return buf.getvalue()


def render_csv(report: Report) -> str:
    """Every table as its own CSV section: a '# table: NAME' line, the CSV, a blank line. With
    --out FOLDER/ each table is its own file FOLDER/NAME.csv instead."""
    return "\n".join(f"# table: {t.name}\n{table_csv(t)}" for t in report.tables)


def split_csv(text: str) -> dict[str, list[dict]]:
    """The tables of render_csv's output, by name: rows as dicts of strings."""
    out: dict[str, list[dict]] = {}
    for section in text.split("# table: ")[1:]:
        name, _, body = section.partition("\n")
        out[name] = list(csv.DictReader(io.StringIO(body.strip("\n") + "\n"))) if body.strip() else []
    return out


RENDERERS = {"markdown": render_markdown, "latex": render_latex, "csv": render_csv, "json": render_json}


# --- W&B ----------------------------------------------------------------------------------------

def _wandb_columns(rows: list[dict]) -> tuple[list[str], list[list[Any]]]:
    """Columns and data for a wandb.Table: a column keeps numbers only when all its cells are
    numbers (or empty); anything mixed becomes text, since W&B rejects mixed column types."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    data = [[_plain(row.get(k)) for k in keys] for row in rows]
    for j in range(len(keys)):
        cells = [r[j] for r in data]
        numeric = all(c is None or (isinstance(c, (int, float)) and not isinstance(c, bool)) for c in cells)
        if not numeric:
            for r in data:
                r[j] = None if r[j] is None else _csv_cell(r[j])
    return keys, data


def training_group(g: Group) -> str:
    """The W&B group of a training run (suite.tracking.wandb_init_kwargs)."""
    from suite.tracking import wandb_group  # late: it imports the experiment (torch), only a W&B push needs it
    return wandb_group(g.model, g.dataset, g.method, g.target_sparsity, g.experiment)


def wandb_identity(report: Report) -> tuple[str, str, list[str]]:
    """Name, group and tags of the report's W&B run: grouped under the sweep whose runs it reads and
    tagged with the sweep's name, the tag every training run of that sweep carries."""
    sweeps = [s["name"] for s in report.meta.get("sweeps") or []]
    label = Path(report.meta["runs_dir"]).name or "runs"
    group = sweeps[0] if len(sweeps) == 1 else label
    return f"report-{label}", group, ["report", *sweeps]


def push_to_wandb(report: Report, plot_files: Sequence[Path], project: str, entity: str | None,
                  directory: str | None, mode: str) -> str:
    """Mirror the tables (wandb.Table) and PNG plots (wandb.Image) to one W&B run of job_type 'report';
    WANDB_MODE, when set, wins over `mode`. Returns what happened, for the log line."""
    mode = os.environ.get("WANDB_MODE", mode)
    if mode == "disabled":
        return "W&B disabled: nothing pushed"
    import wandb

    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
    name, group, tags = wandb_identity(report)
    config = {k: v for k, v in report.meta.items() if k not in ("plots", "recorded")}
    config["training_groups"] = sorted({training_group(g) for g in report.groups if g.round is None})
    run = wandb.init(project=project, entity=entity or None, job_type="report", dir=directory, mode=mode,
                     name=name, group=group, tags=tags, config=config)
    try:
        payload: dict[str, Any] = {}
        for table in report.tables:
            if table.rows:
                columns, data = _wandb_columns(table.rows)
                payload[f"report/{table.name}"] = wandb.Table(columns=columns, data=data)
        for png in plot_files:
            if png.suffix == ".png":
                payload[f"plots/{png.stem}"] = wandb.Image(str(png))
        run.log(payload)
        return f"W&B run ({mode}) written to {Path(run.dir).parent}"
    finally:
        run.finish()


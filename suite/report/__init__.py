"""Reports on finished runs: tables, tests, figures and the committed study document.

Modules import only downward, in this order (none imports another's private names):

    fmt        how values are written for people (numbers, p-values, intervals, names)
    load       result.json files into Runs, Runs into Groups (seeds of one experiment); the primary metric
    labels     one short name per group: the method and what differs from the study's common protocol
    export     a study as one JSON file, and reading it back as Runs
    published  numbers from the literature (configs/published.yaml)
    tables     the tables: rows of raw numbers and how to show them
    claims     the report plan: the declared confirmatory family, collapse, tickets, costs in one unit
    build      the Report: every table from a runs folder or an export, and its headline
    render     Markdown, LaTeX, CSV, JSON and the W&B mirror
    figures    PNG/PDF figures and GIF animations (matplotlib; imported only when drawing)
    study      the results document and the README headline block
    cli        `python -m suite.report` (also `pp-report`)

The names below are the package's public entry points, kept where callers found them before.
"""
from suite.report.build import Report, build_report, headline, results_sentence
from suite.report.cli import main, parse_args
from suite.report.export import load_export
from suite.report.load import Group, Run, Skipped, budget_key, group_runs, scan_runs
from suite.report.published import DEFAULT_PUBLISHED, Published, load_published
from suite.report.render import (RENDERERS, push_to_wandb, render_csv, render_json, render_latex, render_markdown,
                                 split_csv, table_csv)
from suite.report.study import write_study_files
from suite.report.tables import Column, Table

__all__ = ["Column", "DEFAULT_PUBLISHED", "Group", "Published", "RENDERERS", "Report", "Run", "Skipped", "Table",
           "budget_key", "build_report", "group_runs", "headline", "load_export", "load_published", "main",
           "parse_args", "push_to_wandb", "render_csv", "render_json", "render_latex", "render_markdown",
           "results_sentence", "scan_runs", "split_csv", "table_csv", "write_study_files"]

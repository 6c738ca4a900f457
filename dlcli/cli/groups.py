"""How `dlcli runs` and `dlcli show` present folders of runs: a sweep (its trials and best)
and a cross-validation (its folds, and the mean and spread of each metric). Formatting
only: the facts come from `dlcli.runs.catalog`.
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dlcli.cli.program import emit_json
from dlcli.cli.render import (
    Facts,
    console,
    cv_table,
    number,
    show_duration,
    show_status,
    show_value,
    show_when,
)
from dlcli.runs import catalog


def sweep_line(row: dict) -> str:
    """'val_accuracy 0.9757 (trial 3); 5 completed, 1 pruned' for a sweep's row."""
    best = row.get("best")
    head = (
        f"{row.get('metric')} {number(best.get('value'))} (trial {best.get('trial')})"
        if best
        else "no trial completed yet"
    )
    counts = ", ".join(f"{n} {state}" for state, n in row["trials"].items())
    return f"{head}; {counts}" if counts else head


def folder_facts(details: dict) -> Facts:
    """The facts a run, a sweep and a cv all open with: where the folder is, when it ran."""
    facts = Facts()
    facts.add_row("path", escape(details["path"]))
    facts.add_row(
        "started",
        f"{show_when(details['started'])}   ended {show_when(details['ended'])}   "
        f"duration {show_duration(details['duration_s'])}",
    )
    return facts


def _opened(details: dict, kind: str) -> tuple:
    """The console, the folder's record and its facts, after the line a sweep and a cv
    open with: the id, the status and the kind."""
    out = console()
    out.print(
        Text.assemble((details["id"], "bold"), "  ", show_status(details["status"]), f"  ({kind})")
    )
    return out, details["record"], folder_facts(details)


def show_sweep(details: dict, as_json: bool) -> None:
    """A sweep: its settings, best trial and the table of its trials."""
    if as_json:
        emit_json(details)
        return
    out, record, facts = _opened(details, "sweep")
    settings = record.get("sweep") if isinstance(record.get("sweep"), dict) else {}
    if settings:  # a damaged sweep.json has none to show
        facts.add_row(
            "search",
            escape(
                f"{details['metric']} ({details['direction']}), sampler {settings.get('sampler')}, "
                f"pruner {settings.get('pruner')}, {settings.get('trials')} trials, "
                f"{settings.get('parallel')} at a time; study '{record.get('study')}' in "
                f"{record.get('storage')}"
            ),
        )
    facts.add_row("best", escape(sweep_line(details)))
    if isinstance(details.get("best"), dict):
        facts.add_row("best run", escape(str(details["best"].get("run"))))
    if record.get("command"):
        facts.add_row("command", escape(str(record["command"])))
    out.print(facts)
    trials = [t for t in record.get("trials", []) if isinstance(t, dict)]
    if not trials:
        return
    keys = list(dict.fromkeys(k for t in trials for k in (t.get("params") or {})))
    best = (details.get("best") or {}).get("trial")
    table = Table(title=f"trials ({len(trials)})", title_justify="left")
    for column, justify in (("#", "right"), ("state", "left"), (str(details["metric"]), "right")):
        table.add_column(escape(column), justify=justify, no_wrap=True)
    for key in keys:
        table.add_column(escape(catalog.short_key(key)), justify="right", no_wrap=True)
    for column in ("epochs", "duration", "run"):
        table.add_column(column, justify="left" if column == "run" else "right", no_wrap=True)
    for t in trials:
        value = t.get("value") if t.get("state") == "completed" else t.get("last_value")
        mark = " ★" if t.get("number") == best else ""
        table.add_row(
            f"{t.get('number')}{mark}",
            show_status(str(t.get("state"))),
            number(value),
            *[_param((t.get("params") or {}).get(k)) for k in keys],
            number(t.get("epochs")),
            show_duration(t.get("duration_s")),
            escape(
                str(t.get("run") or "—")
                if t.get("state") != "failed"
                else f"{t.get('run') or '—'}: {t.get('error')}"
            ),
        )
    out.print()
    out.print(table)


def _param(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else show_value(value)


def cv_line(row: dict) -> str:
    """'val_accuracy 0.9512 ± 0.0131; 5 completed' for a cv's row."""
    head = (
        f"{row.get('metric')} {number(row.get('mean'))} ± {number(row.get('std'))}"
        if row.get("mean") is not None
        else "no fold completed yet"
    )
    counts = ", ".join(f"{n} {state}" for state, n in (row.get("folds") or {}).items())
    return f"{head}; {counts}" if counts else head


def show_cv(details: dict, as_json: bool) -> None:
    """A cv: its settings, the mean ± std of its main metric and the table of its folds."""
    if as_json:
        emit_json(details)
        return
    out, record, facts = _opened(details, "cv")
    facts.add_row(
        "folds",
        escape(
            f"{details.get('k')} folds (stratified for classes, seed {record.get('seed')}), "
            f"{record.get('parallel')} at a time; the test split held out of every fold"
        ),
    )
    facts.add_row("result", escape(cv_line(details)))
    if record.get("error"):
        facts.add_row("error", escape(str(record["error"])))
    if record.get("command"):
        facts.add_row("command", escape(str(record["command"])))
    out.print(facts)
    if record.get("folds"):
        out.print()
        out.print(cv_table(record))

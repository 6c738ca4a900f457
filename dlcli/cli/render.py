"""How the CLI shows results: rich tables for metrics, exports and runs, number and time
formats, key-value facts. Pure formatting: nothing here reads a run or decides anything.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions
from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text


def metrics_table(title: str, sections: dict[str, dict], baselines: dict | None = None) -> Table:
    """One row per split (train/val/test, or an evaluation), one column per metric; then,
    dimmed, one row per baseline of metrics.json (its test metrics)."""
    names = list(dict.fromkeys(name for values in sections.values() if values for name in values))
    table = Table(title=escape(title), title_justify="left")
    table.add_column("split")
    for name in names:
        table.add_column(escape(name), justify="right", no_wrap=True)
    for split, values in sections.items():
        if values:
            table.add_row(escape(str(split)), *[number(values.get(n)) for n in names])
    shown = baseline_rows(baselines)
    if shown:
        table.add_section()
    for label, values in shown.items():
        table.add_row(escape(label), *[number(values.get(n)) for n in names], style="dim")
    return table


def baseline_rows(baselines) -> dict[str, dict]:
    """metrics.json's `baselines` as rows ('majority baseline': its test metrics, not its
    fit time); one that could not be fitted has none (metrics.json holds its `error`)."""
    if not isinstance(baselines, dict):
        return {}
    rows = {}
    for name, values in baselines.items():
        if isinstance(values, dict):
            label = f"{str(name).replace('_', ' ')} baseline"
            rows[label] = {k: v for k, v in values.items() if k != "fit_s"}
    return rows


def cv_table(record: dict) -> Table:
    """A cv.json as a table: one row per fold (its validation and test metrics, epochs; a
    fold that did not complete says so), the mean and standard deviation over the completed
    folds, then each baseline's mean on the test split."""
    folds = [f for f in record.get("folds") or [] if isinstance(f, dict)]
    summary = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    columns = [
        (split, name)
        for split in ("val", "test")
        for name in dict.fromkeys(
            n for f in folds for n in ((f.get("metrics") or {}).get(split) or {})
        )
    ]
    table = Table(title=f"{len(folds)} folds", title_justify="left")
    table.add_column("fold", no_wrap=True)
    for split, name in columns:
        table.add_column(escape(f"{split} {name}"), justify="right", no_wrap=True)
    table.add_column("epochs", justify="right", no_wrap=True)
    for f in folds:
        values = f.get("metrics") or {}
        state = str(f.get("state"))
        label = Text(str(f.get("fold")))
        if state != "completed":
            label.append(" ").append_text(show_status(state))
        table.add_row(
            label,
            *[number((values.get(split) or {}).get(name)) for split, name in columns],
            number(f.get("epochs")),
        )
    if summary:
        table.add_section()
        for stat in ("mean", "std"):
            table.add_row(
                stat,
                *[
                    number(((summary.get(split) or {}).get(name) or {}).get(stat))
                    for split, name in columns
                ],
                "",
                style="bold",
            )
    for name, scores in (record.get("baselines") or {}).items():
        table.add_row(
            escape(BASELINE_LABELS.get(name, name)),
            *[
                number((scores.get(metric) or {}).get("mean")) if split == "test" else ""
                for split, metric in columns
            ],
            "",
            style="dim",
        )
    return table


BASELINE_LABELS = {"majority": "majority", "gradient_boosting": "boosting"}


def number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"


def exports_table(report: dict) -> Table:
    """A run's exports.json as a table: one row per format, with its check and latency."""
    table = Table(
        title=f"exports of {report.get('run')}: checked on {report.get('test_samples')} test samples "
        f"({report.get('route')})",
        title_justify="left",
    )
    for column, justify in (
        ("format", "left"),
        ("status", "left"),
        ("takes", "left"),
        ("size", "right"),
        ("max |diff|", "right"),
        ("agreement", "right"),
        ("ms/sample @1", "right"),
        ("@256", "right"),
        ("path", "left"),
    ):
        table.add_column(column, justify=justify)
    for name, entry in report.get("formats", {}).items():
        if not isinstance(entry, dict):
            continue
        latency = entry.get("latency_ms_per_sample") or {}
        status = entry.get("status", "?")
        table.add_row(
            name,
            f"[{'green' if status == 'ok' else 'red'}]{status}[/]",
            escape(str(entry.get("takes", ""))),
            f"{entry['bytes'] / 1024:,.0f} KiB" if isinstance(entry.get("bytes"), int) else "",
            f"{entry['max_abs_diff']:.2g}" if isinstance(entry.get("max_abs_diff"), float) else "",
            number(entry.get("agreement")),
            number(latency.get("1")),
            number(latency.get("256")),
            escape(str(entry.get("path", entry.get("error", "")))),
        )
    reference = report.get("reference") or {}
    latency = reference.get("latency_ms_per_sample") or {}
    if latency:
        table.add_row(
            "(the model)",
            "",
            "",
            "",
            "",
            "",
            number(latency.get("1")),
            number(latency.get("256")),
            escape(str(reference.get("runtime", ""))),
            style="dim",
        )
    return table


STATUS_STYLES = {
    "completed": "green",
    "running": "cyan",
    "failed": "red",
    "killed": "red",
    "interrupted": "yellow",
    "incomplete": "dim",
}


# Tables in logs and pipes: wide enough that ids and numbers never wrap.
PLAIN_WIDTH = 200


def console() -> Console:
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, PLAIN_WIDTH)
    return console


class Facts:
    """Key-value lines (`key   value`), keys in bold; no trailing padding in logs."""

    def __init__(self):
        self.rows: list[tuple[str, Text]] = []

    def add_row(self, key: str, value) -> None:
        self.rows.append((key, value if isinstance(value, Text) else Text.from_markup(str(value))))

    def __rich__(self):
        from rich.console import Group

        width = max((len(key) for key, _ in self.rows), default=0)
        return Group(
            *[Text.assemble((key.ljust(width), "bold"), "  ", value) for key, value in self.rows]
        )


def show_duration(seconds) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def show_when(iso) -> str:
    return str(iso)[:19].replace("T", " ") if iso else "—"


def show_epochs(row: dict) -> str:
    done, total = row.get("epochs_run"), row.get("epochs")
    if done is None and total is None:
        return "—"
    return f"{'?' if done is None else done}/{'?' if total is None else total}"


def show_status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def show_value(value) -> str:
    """A config value in a cell: scalars as YAML writes them, lists and maps in flow style."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        import yaml

        return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return str(value)


class RowsTable:
    """A rich `Table` (columns and title, no rows yet) with `rows` added, printed as rich
    prints it, in a fraction of the time.

    Rich lays out every cell of a table through its whole machinery (10,000 runs: about
    10 s). The cells of `dlcli runs` are one line of text each, at most one style: here
    they are padded (or, in a table wider than the console, cut) to the widths rich gives
    the columns and joined into lines, and rich draws only the title, header and edges (a
    table of no rows, at those widths). A table this does not cover (markup, a line break
    or a control character in a cell; a console narrower than two cells a column; a
    shape `runs` does not use) is left whole to rich.
    """

    def __init__(self, table: Table, rows: list[list]):
        self.table, self.rows = table, rows

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        body = self._body(console, options)
        if body is None:
            for row in self.rows:
                self.table.add_row(*row)
            yield self.table
            return
        head = list(
            console.render(self.table, options)
        )  # title, top edge, header, rule, bottom edge
        yield from head[:-2]
        yield from body
        yield from head[-2:]

    def _body(self, console: Console, options: ConsoleOptions) -> list[Segment] | None:
        """The rows' lines as rich would render them, or None when rich must lay them out."""
        table, columns = self.table, self.table.columns
        if (
            table.rows
            or table.caption
            or table.box is None
            or not (table.show_edge and table.show_header)
            or table.show_footer
            or table.show_lines
            or table.leading
            or table.expand
            or table.width is not None
            or table.min_width is not None
            or table.row_styles
            or tuple(table.padding) != (0, 1, 0, 1)
            or not table.pad_edge
            or table.collapse_padding
            or console.get_style(table.style or "") + console.get_style(table.border_style or "")
        ):
            return None  # a shape `runs` does not use (styled borders among them)
        if any(
            console.get_style(column.style or "")
            or column.width is not None
            or column.min_width is not None
            or column.max_width is not None
            or column.ratio
            or column.highlight
            or not column.no_wrap
            or column.justify not in ("left", "right")
            or column.overflow != "ellipsis"
            for column in columns
        ):
            return None
        right = [column.justify == "right" for column in columns]
        seen: dict[
            str, tuple | None
        ] = {}  # a listing repeats most of its texts ("completed", "—", names)

        def read(cell, right: bool):
            found = seen.get(cell) if isinstance(cell, str) else None
            if found is None:
                found = self._cell(console, cell)
                if isinstance(cell, str):
                    seen[cell] = found
            # rich strips the end of a right-justified cell
            return None if found is None or (right and found[0].endswith(" ")) else found

        cells = [[read(cell, right[i]) for i, cell in enumerate(row)] for row in self.rows]
        headers = [read(column.header, False) for column in columns]
        if None in headers or any(len(row) != len(columns) or None in row for row in cells):
            return None
        widths = [
            max(length for _, length, _ in column) + 2 for column in zip(headers, *cells)
        ]  # 1 space each side
        room = options.max_width - len(columns) - 1  # the borders take the rest
        if sum(widths) > room:
            widths = [
                min(width, room) for width in widths
            ]  # rich measures each column within the room
            widths = _narrowed(widths, sum(widths) - room)
            if sum(widths) > room or min(widths) < 2:
                return None  # narrower than its padding: rich knows what to do
        sizes = [width - 2 for width in widths]
        for column, size in zip(columns, sizes):
            column.width = size  # rich measures every cell otherwise
        box = table.box.substitute(
            options, safe=table.safe_box if table.safe_box is not None else console.safe_box
        )
        plain = console.color_system is None  # no styles in the output: one segment for all
        segments, run = [], []  # `run`: text waiting to become one unstyled segment
        for index, row in enumerate(cells):
            last = index == len(cells) - 1
            run.append(box.foot_left if last else box.mid_left)
            divider = box.foot_vertical if last else box.mid_vertical
            for i, (text, length, style) in enumerate(row):
                if (
                    length > sizes[i]
                ):  # too wide for a narrowed column: cut, as rich does, with an ellipsis
                    text, length = (
                        (set_cell_size(text, sizes[i] - 1) + "…" if sizes[i] else ""),
                        sizes[i],
                    )
                padding = " " * (sizes[i] - length)
                text = padding + text if right[i] else text + padding
                if style and not plain:
                    segments += [Segment("".join(run) + " "), Segment(text, style)]
                    run = [" "]
                else:
                    run.append(f" {text} ")
                run.append(
                    divider if i < len(row) - 1 else box.foot_right if last else box.mid_right
                )
            run.append("\n")
        segments.append(Segment("".join(run)))
        return segments

    @staticmethod
    def _cell(console: Console, cell) -> tuple[str, int, Style | None] | None:
        """A cell as (text, width in cells, style), or None when it needs rich's layout."""
        if isinstance(cell, str):
            if "[" not in cell and ":" not in cell:
                text, style = cell, None
            else:
                cell = console.render_str(
                    cell, highlight=False
                )  # markup and :emoji: codes, as rich reads a cell
        if isinstance(cell, Text):
            if cell.spans or cell.justify or cell.overflow or cell.no_wrap is not None:
                return None
            text, style = (
                cell.plain,
                console.get_style(cell.style) if isinstance(cell.style, str) else cell.style,
            )
        elif not isinstance(cell, str):
            return None
        if not text.isprintable():  # a line break, a tab, a control character
            return None
        return text, len(text) if text.isascii() else cell_len(text), style


def _narrowed(widths: list[int], excess: int) -> list[int]:
    """Columns made `excess` cells narrower in all, evenly, as rich narrows a table of
    columns that may not wrap (`rich._ratio.ratio_reduce` with equal ratios)."""
    out, left = [], len(widths)
    for width in widths:
        taken = min(width, round(excess / left))
        out.append(width - taken)
        excess -= taken
        left -= 1
    return out

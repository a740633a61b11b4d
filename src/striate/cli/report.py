"""Rendering runs for people: config tables, summaries, run lists."""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import shlex
from typing import Any, Callable

from rich.markup import escape
from rich.table import Table

from striate.cli.common import console, print_json
from striate.config import TrainConfig
from striate.tracking.store import RunRecord

KEY_PARAMS = ("lr", "batch_size", "epochs", "optimizer")


def config_changes(config: TrainConfig) -> list[tuple[str, Any]]:
    """The model, the data and every setting that differs from its default, in declaration order."""
    default = TrainConfig()
    return [(f.name, getattr(config, f.name)) for f in config.fields()
            if f.name in ("model", "data") or getattr(config, f.name) != getattr(default, f.name)]


def print_config(config: TrainConfig) -> None:
    """The config at train start, compactly: model, data and the settings that differ from the defaults."""
    parts = [f"[bold cyan]{escape(f'{name}={value}')}[/]" for name, value in config_changes(config)]
    console.print("config: " + "  ".join(parts) + "  [dim](the rest at their defaults)[/]", highlight=False)


def fmt_duration(seconds: float | None) -> str:
    """'1h02m', '3m05s', '12.3s'."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def fmt_time(ts: float | None) -> str:
    """Local time of a Unix timestamp."""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def fmt_pct(value: Any) -> str:
    """0.9123 -> '91.23%'."""
    return f"{value:.2%}" if isinstance(value, (int, float)) else "-"


STATUS_STYLE = {"running": "yellow", "finished": "green", "failed": "red", "stopped": "magenta", "crashed": "red"}


def run_row(r: RunRecord) -> dict[str, Any]:
    """The fields `striate runs` shows for one run."""
    best = r.metrics.get("test/acc1", {}).get("max")
    return {"id": r.id, "name": r.name, "project": r.project, "status": r.status, "model": r.model,
            **{k: r.config.get(k) for k in KEY_PARAMS}, "best_test_acc1": best,
            "duration_s": round(r.duration_s, 2), "started": fmt_time(r.created_at)}


# The columns of `striate runs`, in display order: (header, its --columns name, priority). When the
# terminal is too narrow, the column with the highest priority number is hidden first; id and name
# (priority 0) are always shown whole.
RUN_COLUMNS = (("id", "id", 0), ("name", "name", 0), ("status", "status", 1), ("model", "model", 3),
               ("lr", "params.lr", 5), ("batch", "params.batch_size", 7), ("epochs", "params.epochs", 6),
               ("optimizer", "params.optimizer", 8), ("best test acc", "metrics.test/acc1.max", 2),
               ("duration", "duration", 4), ("started", "started", 9), ("tags", "tags", 10),
               ("project", "project", 11))


def _run_cells(r: RunRecord) -> dict[str, str]:
    """The text of each column of `striate runs` for one run."""
    row = run_row(r)
    cells = {"id": r.id[:8], "name": r.name, "status": r.status, "model": r.model or "-",
             "best test acc": fmt_pct(row["best_test_acc1"]), "duration": fmt_duration(r.duration_s),
             "started": row["started"], "tags": ", ".join(r.tags) or "-", "project": r.project}
    for header, name, _ in RUN_COLUMNS:
        if name.startswith("params."):
            value = row[name.removeprefix("params.")]
            cells[header] = "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return cells


def fit_columns(widths: dict[str, int], priority: dict[str, int], available: int,
                overhead: Callable[[int], int]) -> tuple[list[str], list[str]]:
    """(shown, hidden) columns: the widest set that fits ``available`` terminal columns, dropping the
    highest ``priority`` number first; priority 0 is always shown. ``widths`` is in display order;
    ``overhead(n)`` is what borders and padding of n columns take."""
    shown = list(widths)
    hidden: list[str] = []
    while sum(widths[c] for c in shown) + overhead(len(shown)) > available:
        droppable = [c for c in shown if priority[c] > 0]
        if not droppable:
            break
        drop = max(droppable, key=lambda c: (priority[c], shown.index(c)))
        shown.remove(drop)
        hidden.append(drop)
    return shown, hidden


def print_runs(records: list[RunRecord], empty_note: str = "no runs") -> None:
    """A table of runs that fits the terminal: ids and names whole, other columns hidden by priority
    (with a one-line note naming them and --columns), more columns on wide terminals."""
    from rich import box
    from rich.cells import cell_len

    if not records:
        console.print(empty_note, markup=False, highlight=False)
        return
    rows = [_run_cells(r) for r in records]
    project_count = len({r.project for r in records})
    columns = [c for c in RUN_COLUMNS if c[0] != "project" or project_count > 1]
    columns = [c for c in columns if c[0] != "tags" or any(r.tags for r in records)]
    widths = {h: max(cell_len(h), *(cell_len(row[h]) for row in rows)) for h, _, _ in columns}
    priority = {h: p for h, _, p in columns}
    if widths["id"] + widths["name"] + 2 > console.width:
        # id and name cannot share one row whole: one block per run instead, nothing cut or hidden
        print_blocks([{h: row[h] for h, _, _ in columns} for row in rows])
        return
    shown, hidden = fit_columns(widths, priority, console.width, lambda n: 2 * n - 2)
    table = Table(*shown, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column in table.columns:  # nothing is cut with an ellipsis: a cell too long wraps whole
        column.overflow = "fold"
        if column.header in ("id", "name"):
            column.no_wrap = True
            column.min_width = widths[str(column.header)]
    for r, row in zip(records, rows):
        style = STATUS_STYLE.get(r.status, "")
        table.add_row(*(f"[{style}]{escape(row[h])}[/]" if h == "status" and style else escape(row[h])
                        for h in shown))
    console.print(table)
    if hidden:
        names = {h: n for h, n, _ in columns}
        hidden = [h for h in widths if h in hidden]  # in display order
        # names every hidden column: the longest form that fits one line, else the shortest wrapped at
        # spaces to the width (never cut; the --columns value only where it fits whole)
        listed = ", ".join(hidden)
        notes = [f"hidden to fit {console.width} columns: {listed} (wider terminal, or --columns "
                 f"{','.join(names[h] for h in shown[:2] + hidden)})",
                 f"hidden to fit {console.width} columns: {listed} (see them with --columns)",
                 f"hidden: {listed} (see them with --columns)", f"hidden: {listed} (--columns)"]
        note = next((n for n in notes if cell_len(n) <= console.width), notes[-1])
        console.print(note, markup=False, highlight=False, style="dim", overflow="fold")


def print_column_table(rows: list[dict[str, Any]]) -> None:
    """Rows of `runs --columns`: a table when the chosen columns fit the terminal, else one block per
    run (its id and name, then ``column value`` pairs wrapped at the width) — nothing is cut or hidden."""
    from rich import box
    from rich.cells import cell_len

    cells = [{k: "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for k, v in row.items()}
             for row in rows]
    headers = list(rows[0])
    widths = [max(cell_len(h), *(cell_len(c[h]) for c in cells)) for h in headers]
    if sum(widths) + 2 * (len(widths) - 1) <= console.width:
        # Column names and cells are stored text (tags, params): never read as markup.
        table = Table(*map(escape, headers), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      collapse_padding=True)
        for row in cells:
            table.add_row(*(escape(row[h]) for h in headers))
        console.print(table)
        return
    print_blocks(cells)


def print_blocks(cells: list[dict[str, str]]) -> None:
    """One block per run: its id and name on a line of their own (whole, one logical line), then
    ``column value`` pairs wrapped at the width."""
    from rich.cells import cell_len

    headers = list(cells[0]) if cells else []
    lead = [h for h in ("id", "name") if h in headers]
    for row in cells:
        console.print("  ".join(row[h] for h in lead) or "run", markup=False, highlight=False, style="bold",
                      soft_wrap=True)
        line = " "
        for h in headers:
            if h in lead:
                continue
            pair = f"  {h} {row[h]}"
            if cell_len(line) + cell_len(pair) > console.width and line.strip():
                console.print(line, markup=False, highlight=False, soft_wrap=True)
                line = " "
            line += pair
        if line.strip():
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def print_run_result(record: RunRecord, store_location: str, as_json: bool) -> None:
    """How `train` and `resume` end: the run's summary as JSON, or the human summary with a hint."""
    if as_json:
        print_json({"id": record.id, "name": record.name, "status": record.status, "summary": record.summary})
    else:
        print_train_summary(record, store_location)


def print_train_summary(r: RunRecord, store_location: str) -> None:
    """What `striate train` prints when it ends; a run that did not finish says where it stopped and
    how to continue it."""
    s = r.summary
    style = STATUS_STYLE.get(r.status, "")
    default = store_location in ("striate-runs", "./striate-runs")
    store_flag = "" if default else f" --store {shlex.quote(store_location)}"
    prog = invoked_as()
    head = f"\nrun [bold]{escape(r.name)}[/] ({r.id[:8]}) [{style}]{r.status}[/]"
    epochs = int(s.get("epochs_completed") or 0)
    rate = f"{s['train_samples_per_s']:,.0f} samples/s, " if s.get("train_samples_per_s") else ""
    timing = (f"; {rate}{fmt_duration(s.get('train_seconds'))} of training "
              f"({fmt_duration(s.get('wall_seconds'))} with evaluation)" if s.get("train_seconds") else "")
    if r.status == "finished":
        console.print(f"{head}: test top-1 {fmt_pct(s.get('test_acc1'))}, top-5 {fmt_pct(s.get('test_acc5'))}, "
                      f"best top-1 {fmt_pct(s.get('best_test_acc1'))} after {plural(epochs, 'epoch')}{timing}",
                      highlight=False)
    else:
        tested = (f"test top-1 {fmt_pct(s.get('test_acc1'))} after {plural(epochs, 'epoch')}, best "
                  f"{fmt_pct(s.get('best_test_acc1'))}" if epochs else "no epoch completed, so no test accuracy")
        console.print(f"{head} {escape(stopped_at(r))}: {tested}{timing}", highlight=False)
        if r.status in RESUMABLE:
            print_continue_hint(r, prog, store_flag)
    # each command on a line of its own, never broken by a newline, so it copies and pastes whole
    print_command("look at it again:", f"{prog} show {r.id[:8]}{store_flag}")
    print_command("all runs:", f"{prog} runs{store_flag}")


def print_command(label: str, command: str) -> None:
    """``label  command`` on one line that is never hard-wrapped (the terminal folds it, if it must)."""
    console.print(f"{escape(label)}  [bold]{escape(command)}[/]", highlight=False, soft_wrap=True)


def print_continue_hint(r: RunRecord, prog: str, store_flag: str) -> None:
    """How to continue a run that did not finish: `resume` from its checkpoint (saying which steps it
    redoes), or `reproduce` when it has no checkpoint to resume from."""
    checkpoint = r.summary.get("last_checkpoint")
    if not checkpoint:
        print_command("no checkpoint to resume from; run it again:", f"{prog} reproduce {r.id[:8]}{store_flag}")
        return
    label = "continue it:"
    stop, at = stop_step(r), checkpoint.get("global_step") if isinstance(checkpoint, dict) else None
    if isinstance(at, int) and stop > at:
        label = (f"continue it from its checkpoint at step {at} (the {plural(stop - at, 'step')} after it "
                 "are redone):")
    print_command(label, f"{prog} resume {r.id[:8]}{store_flag}")


def print_setup_interrupted(session: Any) -> None:
    """The one line `train` prints for Ctrl-C before its first training step."""
    run_id = getattr(session, "run_id", "") if session is not None else ""
    recorded = f" (run {run_id[:8]} is recorded as stopped, with no checkpoint)" if run_id else ""
    console.print(f"stopped before training began: interrupted (Ctrl-C) during set-up{recorded}",
                  markup=False, highlight=False, soft_wrap=True)


RESUMABLE = ("stopped", "crashed", "failed")  # the statuses `striate resume` continues


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def stop_step(r: RunRecord) -> int:
    """The last training step a run took (recorded when it stopped; else its last logged step)."""
    recorded = r.summary.get("stopped_at_step")
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    return max((int(m.get("last_step") or 0) for m in r.metrics.values()), default=0)


def stopped_at(r: RunRecord) -> str:
    """Where a run that did not finish stopped: ``in epoch 2/5 at step 345, interrupted (Ctrl-C)``."""
    last_step = stop_step(r)
    done = int(r.summary.get("epochs_completed") or 0)
    total = r.config.get("epochs")
    epoch_end = (r.metrics.get("epoch") or {}).get("last_step")
    if done and epoch_end is not None and int(epoch_end) >= last_step:
        where = f"after epoch {done}{f'/{total}' if total else ''} (step {last_step})"
    elif last_step:
        where = f"in epoch {done + 1}{f'/{total}' if total else ''} at step {last_step}"
    else:
        where = "before its first step"
    reason = r.summary.get("stop_reason")
    return f"{where}{f', {reason}' if reason else ''}"


def invoked_as() -> str:
    """How the user can type this command again: `striate` when it is on PATH, else its path."""
    import os
    import shutil
    import sys
    from pathlib import Path

    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("striate")
    if argv0.name == "__main__.py":
        return "python -m striate"
    on_path = shutil.which("striate")
    if on_path and argv0.exists() and Path(on_path).resolve() == argv0.resolve():
        return "striate"
    try:
        relative = os.path.relpath(argv0.resolve(), Path.cwd())
    except ValueError:  # another drive (Windows)
        return str(argv0)
    if relative.startswith(".."):
        return str(argv0.resolve())
    return relative if relative.startswith(".") else f"./{relative}"


def print_run(r: RunRecord, store_option: str | None = None) -> None:
    """One run in full; ``store_option`` is the --store given, repeated in the commands it suggests."""
    style = STATUS_STYLE.get(r.status, "")
    # short lines: each fits 80 columns whole (a run name aside)
    console.print(f"[bold]{escape(r.name)}[/]  [{style}]{r.status}[/]  id {r.id}", highlight=False)
    console.print(f"project {escape(r.project)}  model {escape(r.model or '-')}  "
                  f"duration {fmt_duration(r.duration_s)}", highlight=False)
    console.print(f"started {fmt_time(r.created_at)}  ended {fmt_time(r.ended_at)}", highlight=False)
    if r.tags:
        console.print("tags: " + escape(", ".join(r.tags)))
    if r.notes:
        console.print(f"notes: {r.notes}", markup=False, highlight=False)
    if r.error:
        console.print(f"[red]error: {escape(r.error)}[/]", highlight=False)
    if r.status in RESUMABLE:
        store_flag = f" --store {shlex.quote(store_option)}" if store_option else ""
        console.print(f"{r.status} {escape(stopped_at(r))}", highlight=False)
        print_continue_hint(r, invoked_as(), store_flag)
    config = folding_table("setting", "value", title="config")
    for k, v in r.config.items():
        config.add_row(escape(k), escape(_num(v)))
    console.print(config)
    if r.metrics:
        headers = ("metric", "last", "min", "max", "points", "last step")
        metric_rows = [[k, *(_num(m[c]) for c in ("last", "min", "max")), str(m["count"]), str(m["last_step"])]
                       for k, m in sorted(r.metrics.items())]
        print_keyed(headers, metric_rows, "metrics")
    summary = folding_table("key", "value", title="summary")
    for k, v in r.summary.items():
        if k in ("checkpoints", "per_class_acc1", "exports"):
            continue
        summary.add_row(escape(k), escape(_num(v)))
    console.print(summary)
    exports = [e for e in r.summary.get("exports") or [] if isinstance(e, dict)]
    if exports:  # recorded by `striate export`, so `striate which` finds the run from the file
        console.print("exported: " + ", ".join(f"{e.get('file')} ({e.get('format')}, sha256 "
                                               f"{str(e.get('sha256'))[:12]})" for e in exports),
                      markup=False, highlight=False)
    per_class = r.summary.get("per_class_acc1")
    if per_class:
        per_class_text = "  ".join(f"{c} {fmt_pct(a)}" for c, a in per_class.items())
        console.print("per-class top-1: " + escape(per_class_text),
                      highlight=False)
    if r.dataset:
        console.print(f"dataset: {r.dataset.get('name')}  fingerprint {str(r.dataset.get('fingerprint'))[:16]}  "
                      f"train {r.dataset.get('train_size')}  test {r.dataset.get('test_size')}  "
                      f"from {r.dataset.get('source')}", highlight=False, markup=False)
    env = r.environment
    if env:
        git = env.get("git", {})
        code = (f"git {str(git.get('commit'))[:10]}{' (dirty)' if git.get('dirty') else ''} on {git.get('branch')}"
                if git.get("in_repo") else "not in a git repository")
        cpu = escape(str(env.get("cpu")))
        console.print(f"environment: python {env.get('python')}  torch {env.get('torch')}  {cpu}  "
                      f"{env.get('hostname')}  {code}", highlight=False)
        console.print(f"command: {' '.join(env.get('command', []))}", highlight=False, markup=False)
    if r.artifacts:
        art_rows = [[a["path"], a["kind"], f"{a['size']:,}", a["sha256"][:16]] for a in r.artifacts]
        print_keyed(("artifact", "kind", "size", "sha256"), art_rows, "artifacts")


def print_keyed(headers: tuple[str, ...], rows: list[list[str]], title: str) -> None:
    """Rows keyed by their first cell (a metric key, an artifact path) that is never split: a table where
    it fits, else each key on a line of its own with the other columns below it."""
    table = whole_first_table(headers, rows, title)
    if table is not None:
        console.print(table)
        return
    console.print(title, style="bold", highlight=False, markup=False)
    for row in rows:
        console.print(row[0], markup=False, highlight=False, soft_wrap=True)
        console.print("    " + "  ".join(f"{h} {v}" for h, v in zip(headers[1:], row[1:])), markup=False,
                      highlight=False)


def folding_table(*headers: str, title: str) -> Table:
    """A table whose long cells wrap whole onto more lines instead of being cut with an ellipsis."""
    table = Table(*headers, title=title)
    for column in table.columns:
        column.overflow = "fold"
    return table


def fits_whole(headers: tuple[str, ...], rows: list[list[str]]) -> bool:
    """Whether a compact table (no side borders) of ``rows`` keeps every first-column cell (metric
    keys, artifact paths) on one line at this width, the other columns folding down to their longest word."""
    from rich.cells import cell_len

    others = sum(max((cell_len(w) for w in [*headers[i].split(), *(row[i] for row in rows)]), default=0)
                 for i in range(1, len(headers)))
    longest = max((cell_len(row[0]) for row in rows), default=0)
    return longest + others + 2 * (len(headers) - 1) <= console.width


def whole_first_table(headers: tuple[str, ...], rows: list[list[str]], title: str) -> Table | None:
    """A table whose first column (keys, paths) is never split, or None when that cannot fit the width."""
    from rich import box

    if not fits_whole(headers, rows):
        return None
    table = Table(*headers, title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for column in table.columns:
        column.overflow = "fold"
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(*map(escape, row))
    return table


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _flat_params(r: RunRecord) -> dict[str, Any]:
    from striate.tracking.store.sql import flatten_params

    return flatten_params(r.config)


def _param_value(key: str, r: RunRecord) -> Any:
    return _flat_params(r).get(key)


def _metric_value(key: str, aggregate: str, r: RunRecord) -> Any:
    return (r.metrics.get(key) or {}).get(aggregate)


def select_columns(records: list[RunRecord], columns: list[str]) -> list[dict[str, Any]]:
    """Rows with the chosen columns: run fields, params.KEY, metrics.KEY[.last|.min|.max|.count].
    A params./metrics. column that none of ``records`` has is an error naming the closest one."""
    from striate.errors import ConfigError
    from striate.tracking.query import check_known_fields, parse_field

    basic = {"id": lambda r: r.id[:8], "name": lambda r: r.name, "status": lambda r: r.status,
             "model": lambda r: r.model, "project": lambda r: r.project, "tags": lambda r: ",".join(r.tags),
             "duration": lambda r: fmt_duration(r.duration_s), "started": lambda r: fmt_time(r.created_at),
             "notes": lambda r: r.notes}
    getters: list[tuple[str, Callable[[RunRecord], Any]]] = []
    if not columns:
        raise ConfigError("--columns names no column", f"name some, e.g. --columns id,name,params.lr "
                                                       f"(fields: {', '.join(basic)}, params.KEY, metrics.KEY)")
    for column in columns:
        if column in basic:
            getters.append((column, basic[column]))
            continue
        if not column.startswith(("params.", "param.", "config.", "metrics.", "metric.")):
            head, dot, rest = column.partition(".")
            if dot:  # a misspelt prefix: suggest the whole field with the right one (paramz.lr -> params.lr)
                close = [f"{c}.{rest}" for c in difflib.get_close_matches(head, ["params", "metrics"], n=1,
                                                                         cutoff=0.6)]
            else:
                close = difflib.get_close_matches(column, list(basic), n=1, cutoff=0.6)
            raise ConfigError(f"unknown field {column!r} in --columns",
                              f"{f'did you mean {close[0]}? ' if close else ''}use {', '.join(basic)}, params.KEY "
                              "or metrics.KEY[.last|.min|.max|.count]")
        field = parse_field(column, "in --columns")
        if records and field.kind in ("param", "metric"):
            check_known_fields([field], {k for r in records for k in _flat_params(r)},
                               {k for r in records for k in r.metrics}, "in --columns")
        if field.kind == "param":
            getters.append((column, functools.partial(_param_value, field.key)))
        elif field.kind == "metric":
            getters.append((column, functools.partial(_metric_value, field.key, field.aggregate)))
    return [{name: get(r) for name, get in getters} for r in records]

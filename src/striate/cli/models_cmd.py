"""`striate models` — list, inspect and draw architectures (registered names or layer-spec files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from striate.cli.common import JSON_OPTION, console, parse_input_shape, print_json
from striate.errors import ConfigError

models_app = typer.Typer(help="List, inspect and draw model architectures.", no_args_is_help=False)


def human(n: float) -> str:
    """A count in K/M/G with three significant decimals: 416520 -> 416.5K."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3f}".rstrip("0").rstrip(".") + unit
    return str(int(n))


def _count(n: int, exact: bool) -> str:
    """``1,234,567`` when there is room, else ``1.235M``."""
    return f"{n:,}" if exact else human(n)


def _number(header: str) -> Any:
    """A right-aligned column that never wraps: names may wrap, numbers must stay whole."""
    from rich.table import Column

    return Column(header, justify="right", no_wrap=True)


@models_app.callback(invoke_without_command=True)
def list_models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    channels: int = typer.Option(1, "--channels", help="input channels the counts are computed for"),
    classes: int = typer.Option(10, "--classes", help="output classes the counts are computed for"),
) -> None:
    """List every registered model with parameters and multiply-adds at its own input size.

    Counts are for 1 input channel and 10 classes unless --channels/--classes say otherwise
    (`--channels 3 --classes 1000` gives the ImageNet figures the papers quote).
    """
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Column, Table

    from striate import models

    rows: list[dict[str, Any]] = []
    for name in models.names():
        entry = models.info(name)
        # From the model's record: no model is built (the tests hold every record to a real build).
        rows.append({"name": name, "parameters": entry.count_parameters(channels, classes),
                     "macs": entry.count_macs(channels, classes), "input_size": entry.input_size,
                     "min_input_size": entry.min_input_size, "summary": entry.summary})
    if as_json:
        print_json(rows)
        return
    from rich import box

    # Below 100 columns the counts are rounded (57.03M) so the description keeps room to read in a few
    # lines; the exact figures are in --json and `striate models show`.
    exact = console.width >= 100
    out = Table(Column("model", no_wrap=True), _number("parameters"), _number("mult-adds"),
                Column("input (min)", no_wrap=True), Column("description", ratio=1),
                box=box.SIMPLE_HEAD, pad_edge=False, expand=False,
                caption=f"counts for {channels} input channel(s), {classes} classes, at each model's input size")
    for r in rows:
        count = f"{r['parameters']:,}" if exact else human(r["parameters"])
        out.add_row(r["name"], count, human(r["macs"]), f"{r['input_size']} ({r['min_input_size']})", r["summary"])
    console.print(out)


@models_app.command("show")
def show(
    name: str = typer.Argument(..., help="registered model name or layer-spec file (.yaml/.yml/.json)"),
    input_shape: Optional[str] = typer.Option(None, "--input", help="CxHxW (default: 1 channel at the "
                                                                      "model's input size)"),
    classes: int = typer.Option(10, "--classes", help="output classes"),
    as_json: bool = JSON_OPTION,
    diagram_path: Optional[Path] = typer.Option(None, "--diagram", help="also draw the architecture to "
                                                                          "FILE.svg or FILE.png"),
) -> None:
    """Print a model's layer table (output shapes, parameters, multiply-adds) and optionally draw it."""
    from rich.table import Column, Table

    from striate import models
    from striate.models.inspect import inspect_model
    from striate.models.registry import SPEC_SUFFIXES

    entry = models.info(name)
    shape = parse_input_shape(input_shape) if input_shape else (1, entry.input_size, entry.input_size)
    is_spec = name.lower().endswith(SPEC_SUFFIXES)
    if not is_spec and (shape[1] < entry.min_input_size or shape[2] < entry.min_input_size):
        raise ConfigError(f"{name} needs inputs of at least {entry.min_input_size}x{entry.min_input_size}, "
                          f"got {shape[1]}x{shape[2]}", f"use --input {shape[0]}x{entry.input_size}x{entry.input_size}")
    # A spec's linear sizes are inferred for one input size: build it for the size asked about.
    options = {"input_size": shape[1]} if is_spec else {}
    model, table = inspect_model(name, shape, classes, **options)  # on the meta device: no memory, no arithmetic
    written = None
    if diagram_path is not None:
        from striate.models.diagram import diagram

        title = (f"{name} — input {'x'.join(map(str, shape))}, {table.parameters:,} parameters, "
                 f"{human(table.macs)} multiply-adds")
        written = diagram(model, shape, title).save(diagram_path)
    if as_json:
        print_json({"model": name, "num_classes": classes, **table.to_dict(),
                    "diagram": str(written) if written else None})
        return
    from rich import box

    exact = console.width >= 100  # narrower: counts rounded (1.503G), so names and types stay whole
    out = Table(_number("#"), Column("layer", no_wrap=True), Column("type", no_wrap=True),
                Column("output", no_wrap=True), _number("parameters"),
                _number("multiply-adds" if exact else "mult-adds"), box=box.SIMPLE_HEAD, pad_edge=False,
                title=f"{name}: {entry.summary}", title_justify="left")
    previous: list[str] = []
    for i, r in enumerate(table, start=1):
        shape_text = "x".join(map(str, r.output_shape)) if r.output_shape else "-"
        parts = r.name.split(".")
        for depth, part in enumerate(parts[:-1]):  # a line for each enclosing module the rows enter
            if previous[:depth + 1] != parts[:depth + 1]:
                out.add_row("", "  " * depth + part, style="bold")
        previous = parts
        out.add_row(str(i), "  " * (len(parts) - 1) + parts[-1], r.type, shape_text,
                    _count(r.parameters, exact) if r.parameters else "", _count(r.macs, exact) if r.macs else "")
    out.add_section()
    out.add_row("", "total", "", "x".join(map(str, table.output_shape or ())), f"{table.parameters:,}",
                f"{table.macs:,}" if exact else human(table.macs))
    console.print(out)
    not_run = table.parameters - sum(r.parameters for r in table)
    if not_run:
        console.print(f"{not_run:,} parameters sit in layers not run at inference (e.g. auxiliary heads).")
    console.print(f"input {'x'.join(map(str, shape))}, {classes} classes; multiply-adds count convolutions "
                  "and linear layers (torchvision's GFLOPS convention).", highlight=False)
    if written:
        console.print(f"wrote the diagram to {written}", highlight=False)

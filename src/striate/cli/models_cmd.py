"""`striate models` — the registered architectures."""

from __future__ import annotations

import typer

from striate.cli.app import app, console, print_json


@app.command("models")
def list_models(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List every registered model with its parameter count (1 channel, 10 classes)."""
    from rich.table import Table

    from striate import models

    rows = []
    for name in models.names():
        entry = models.info(name)
        params = models.count_parameters(models.create(name, num_classes=10, in_channels=1))
        rows.append({"name": name, "parameters": params, "input_size": entry.input_size, "summary": entry.summary})
    if as_json:
        print_json(rows)
        return
    table = Table("model", "parameters", "input", "description")
    for r in rows:
        table.add_row(r["name"], f"{r['parameters']:,}", f"{r['input_size']}x{r['input_size']}", r["summary"])
    console.print(table)

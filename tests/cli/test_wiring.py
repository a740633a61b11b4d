"""The CLI is wired one way: app.py imports the command modules, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import typer

import striate.cli

CLI = Path(striate.cli.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "striate.cli":  # from striate.cli import x_cmd
                found.update(f"striate.cli.{alias.name}" for alias in node.names)
    return found


def test_command_modules_import_neither_the_app_nor_each_other():
    modules = sorted(CLI.glob("*.py"))
    assert len([m for m in modules if m.stem.endswith("_cmd")]) >= 9, "the command modules were found"
    for module in modules:
        if module.stem == "app":
            continue
        cli_imports = {m for m in imported_modules(module) if m.startswith("striate.cli.")}
        assert "striate.cli.app" not in cli_imports, module.name
        assert not {m for m in cli_imports if m.endswith("_cmd")}, (module.name, cli_imports)


def test_importing_the_app_gives_every_command():
    from striate.cli.app import app

    group = typer.main.get_command(app)
    assert set(group.commands) == {
        "runs", "show", "tag", "note", "archive", "delete", "which", "sync", "compare", "diff", "export",
        "export-tensorboard", "export-run", "import-run", "resume", "reproduce", "train", "data", "models", "import",
        "artifacts", "history", "store", "server", "stop", "ui", "sweep"}

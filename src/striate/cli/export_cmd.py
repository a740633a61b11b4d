"""`striate export` — a model or a trained run as ONNX or TorchScript, verified against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from striate.cli.common import JSON_OPTION, console, parse_input_shape, print_json

commands = typer.Typer()  # registered on the app by striate.cli.app


@commands.command("export")
def export_command(
    target: str = typer.Argument(..., help="run id (or prefix), registered model name, or layer-spec file"),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="file to write (default: NAME.onnx / "
                                                                        "NAME.pt in this folder)"),
    input_shape: Optional[str] = typer.Option(None, "--input", help="CxHxW (default: the run's input, or 1 "
                                                                      "channel at the model's input size)"),
    classes: Optional[int] = typer.Option(None, "--classes", help="output classes for a fresh model (default 10)"),
    store: Optional[str] = typer.Option(None, "--store", help="store folder holding the run (default "
                                                                "./striate-runs or $STRIATE_STORE)"),
    force: bool = typer.Option(False, "--force", help="replace the output file if it exists"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Export a run's trained weights (or a model with fresh weights) and check the file against PyTorch."""
    from striate.export import export

    shape = parse_input_shape(input_shape) if input_shape else None
    result = export(target, fmt.lower(), output, shape, classes, store, force=force)
    if as_json:
        print_json(result.to_dict())
        return
    batch = "any batch size" if result.dynamic_batch else "batch size 1"
    source, path = escape(str(result.source)), escape(str(result.path))
    console.print(f"exported {source} to [bold]{path}[/] ({result.format}, input "
                  f"{'x'.join(map(str, result.input_shape))}, {batch}, {result.num_classes} classes)", highlight=False)
    checker = "onnxruntime" if result.format == "onnx" else "the reloaded TorchScript module"
    console.print(f"checked: {checker} vs PyTorch, max abs difference {result.max_abs_diff:.2e} "
                  f"(limit {result.tolerance:g})", highlight=False)
    for name in result.files:  # everything that must travel together
        console.print(f"wrote {escape(name)} ({Path(name).stat().st_size / 1e6:.2f} MB)", highlight=False)
    if len(result.files) > 1:
        console.print("keep these files together: the .onnx file reads its weights from the .onnx.data file",
                      highlight=False)
    if result.run_id and not result.recorded:
        console.print(f"recorded with run {result.run_id[:8]}: `striate which {escape(result.path)}` "
                      "finds it", highlight=False)
    elif result.run_id:
        console.print(f"[yellow]not recorded with the run[/] ({escape(result.recorded)}): `striate which` will not "
                      "find this file", highlight=False)

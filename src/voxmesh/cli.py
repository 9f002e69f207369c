"""The `voxmesh` command. It only wires library parts together."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from voxmesh import __version__
from voxmesh.errors import VoxmeshError

app = typer.Typer(
    name="voxmesh",
    help="Speech-driven 3D facial animation: datasets, training, evaluation and rendering.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect datasets in the shared layout.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def user_errors(command: Callable) -> Callable:
    """Print a VoxmeshError as one line on stderr and exit with status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VoxmeshError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"voxmesh {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """voxmesh: speech in, an animated 3D face mesh out."""


@data_app.command("check")
@user_errors
def data_check(
    directory: Path = typer.Argument(..., help="Dataset folder in the shared layout."),
    preset: str = typer.Option("generic", help="vocaset, biwi, ravdess3d or generic."),
    fps: Optional[float] = typer.Option(None, help="Frame rate of vertices_npy for the generic preset (default 30)."),
) -> None:
    """Count sequences and durations, and list every problem found, one a line."""
    from voxmesh.data.check import check_dataset

    report = check_dataset(directory, preset=preset, fps=fps, progress=sys.stderr.isatty())
    for line in report.summary_lines():
        typer.echo(line)
    for problem in report.problems:
        typer.echo(f"problem: {problem}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("evaluate-predictions")
@user_errors
def evaluate_predictions(
    pred_dir: Path = typer.Argument(..., help="Folder of <name>.npy predictions, [T, V*3] at the dataset fps."),
    dataset_dir: Path = typer.Argument(..., help="Dataset folder in the shared layout."),
    preset: str = typer.Option("generic", help="vocaset, biwi, ravdess3d or generic."),
    split: Optional[str] = typer.Option(None, help="Only sequences of this split (train, val, test, test_unseen)."),
    fps: Optional[float] = typer.Option(None, help="Frame rate for the generic preset."),
    lips: Optional[Path] = typer.Option(None, help="Lip vertex indices (one a line, .json or FLAME_masks.pkl)."),
    upper_face: Optional[Path] = typer.Option(None, "--upper-face", help="Upper-face vertex indices for FDD."),
    output: Optional[Path] = typer.Option(None, "--json", help="Write the result here (default PRED_DIR/metrics.json)."),
) -> None:
    """Score predictions made by any project on voxmesh's metrics."""
    from voxmesh.eval.predictions import evaluate_prediction_folder, format_metrics_table
    from voxmesh.files import atomic_path

    region_files = {k: v for k, v in {"lips": lips, "upper_face": upper_face}.items() if v is not None}
    result = evaluate_prediction_folder(pred_dir, dataset_dir, preset=preset, split=split, fps=fps,
                                        region_files=region_files, progress=sys.stderr.isatty())
    typer.echo(format_metrics_table(result))
    output = output or Path(pred_dir) / "metrics.json"
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    typer.echo(f"wrote {output}")


if __name__ == "__main__":
    app()

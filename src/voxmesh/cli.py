"""The `voxmesh` command. It only wires library parts together."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional

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
data_app = typer.Typer(help="Check datasets in the shared layout, and import them as downloaded.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (timeout, docker stop, batch schedulers) unwinds like Ctrl-C: every
    writer's cleanup runs, so no temporary or partial output is left."""
    raise SystemExit(128 + signum)


def user_errors(command: Callable) -> Callable:
    """Print a VoxmeshError as one line on stderr and exit with status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from voxmesh.files import os_error_sentence

        # While the command works, SIGTERM unwinds like Ctrl-C (see _terminated); afterwards
        # the previous handler is back, so a late signal cannot interrupt the interpreter's exit.
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
        try:
            return command(*args, **kwargs)
        except VoxmeshError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # disk full, read-only folder, ...: the writers have removed their partial files
            sentence = os_error_sentence(exc)
            if sentence is None:
                raise
            typer.echo(f"error: {sentence}", err=True)
            raise typer.Exit(2) from None
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


@contextlib.contextmanager
def _status(message: str) -> Iterator[None]:
    """One line on stderr while something slow happens before any progress bar (loading a
    model takes seconds), shown only on a terminal."""
    show = sys.stderr.isatty()
    if show:
        typer.echo(f"{message} ...", err=True, nl=False)
    try:
        yield
    finally:
        if show:
            typer.echo(" done" if sys.exc_info()[0] is None else "", err=True)


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
    from voxmesh.data.presets import check_fps

    if fps is not None:
        check_fps(fps)
    report = check_dataset(directory, preset=preset, fps=fps, progress=sys.stderr.isatty())
    for line in report.summary_lines():
        typer.echo(line)
    for problem in report.problems:
        typer.echo(f"problem: {problem}")
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("import")
@user_errors
def data_import(
    kind: str = typer.Argument(..., help="What the download is: vocaset."),
    raw_dir: Path = typer.Argument(..., help="The download: data_verts.npy, raw_audio_fixed.pkl, subj_seq_to_idx.pkl, "
                                             "templates.pkl."),
    out_dir: Path = typer.Argument(..., help="Dataset folder to write in the shared layout."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="FLAME_masks.pkl: written as regions.json (lips, eyes, "
                                                               "forehead) for LVE, EVE and FDD."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Write a dataset as downloaded in the shared layout (resumable: rerun after an interruption)."""
    from voxmesh.data.importers import import_vocaset

    if kind.lower() != "vocaset":
        raise VoxmeshError(f"Cannot import '{kind}': voxmesh imports vocaset; BIWI in CodeTalker's layout and "
                           "3D-RAVDESS in the shared layout are read as they are (voxmesh data check DIR --preset ...).")
    report = import_vocaset(raw_dir, out_dir, masks=masks, overwrite=overwrite, progress=sys.stderr.isatty())
    for line in report.summary_lines():
        typer.echo(line)
    typer.echo(f"check it with: voxmesh data check {out_dir} --preset vocaset")


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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing result file."),
) -> None:
    """Score predictions made by any project on voxmesh's metrics."""
    from voxmesh.eval.predictions import (
        evaluate_prediction_folder,
        format_metrics_table,
    )
    from voxmesh.files import atomic_path, refuse_existing

    output = output or Path(pred_dir) / "metrics.json"
    refuse_existing(output, overwrite=overwrite, instead="choose another --json")  # before any scoring
    region_files = {k: v for k, v in {"lips": lips, "upper_face": upper_face}.items() if v is not None}
    result = evaluate_prediction_folder(pred_dir, dataset_dir, preset=preset, split=split, fps=fps,
                                        region_files=region_files, progress=sys.stderr.isatty())
    typer.echo(format_metrics_table(result))
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    typer.echo(f"wrote {output}")


@app.command("synth")
@user_errors
def synth(
    out: Optional[Path] = typer.Argument(None, help="Folder to write the dataset to (the shared layout)."),
    preset: str = typer.Option("tiny", help="tiny (tests, seconds), small (default benchmark) or full."),
    seed: int = typer.Option(0, help="The same seed gives the same bytes."),
    fps: float = typer.Option(30.0, help="Frame rate of the vertex sequences."),
    workers: Optional[int] = typer.Option(None, help="Processes to use (default: the CPU count, at most 4)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder or contact sheet."),
    contact_sheet: Optional[Path] = typer.Option(
        None, "--contact-sheet", help="Render the head, its visemes, expressions and identities to this PNG."),
) -> None:
    """Generate the synthetic speech-to-face dataset (espeak-ng speech, procedural head)."""
    from voxmesh.files import refuse_existing

    if out is None and contact_sheet is None:
        raise VoxmeshError("Nothing to write was given; name an output folder to synthesize, or --contact-sheet PNG, or both.")
    if workers is not None and workers < 1:
        raise VoxmeshError(f"--workers {workers} must be 1 or more; leave it out to use the CPU count.")
    if contact_sheet is not None and contact_sheet.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise VoxmeshError(f"Contact sheet {contact_sheet} is neither .png nor .jpg; name it SHEET.png.")
    # Both outputs are checked before either is written (the dataset's own check comes
    # first thing in synthesize_dataset, before the contact sheet is drawn).
    refuse_existing(contact_sheet, overwrite=overwrite)
    if out is not None:
        from voxmesh.data.synthetic.dataset import synthesize_dataset

        summary = synthesize_dataset(out, preset=preset, seed=seed, fps=fps, workers=workers,
                                     progress=sys.stderr.isatty(), overwrite=overwrite)
        splits = ", ".join(f"{k} {v}" for k, v in sorted(summary["splits"].items()))
        typer.echo(f"wrote {summary['clips']} clips ({summary['seconds'] / 60:.1f} min) of {summary['subjects']} "
                   f"subjects to {summary['path']}; splits: {splits}")
    if contact_sheet is not None:
        from voxmesh.data.synthetic.sheet import render_contact_sheet

        render_contact_sheet(contact_sheet)
        typer.echo(f"wrote {contact_sheet}")


@app.command("train")
@user_errors
def train_command(
    config: Path = typer.Argument(..., help="Training YAML (method, encoder, model, data, train, stages)."),
    data: Path = typer.Option(..., "--data", help="Dataset folder in the shared layout."),
    out: Path = typer.Option(..., "--out", help="Run folder to write (checkpoints, log.jsonl, loss.png, model/)."),
    stage: Optional[str] = typer.Option(None, help="Train only this stage (staged methods; default: every stage in turn)."),
    resume: bool = typer.Option(False, "--resume", help="Continue unfinished stages from RUN/<stage>/last."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again over stages the run folder already holds."),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a config value, e.g. --set train.lr=3.0e-4 (repeatable)."),
) -> None:
    """Train a method on a dataset (one CPU, one GPU, or many through `accelerate launch -m voxmesh.cli train`)."""
    from voxmesh.train.config import load_config
    from voxmesh.train.trainer import train

    if out.exists() and not out.is_dir():
        raise VoxmeshError(f"Run folder {out} is a file; choose a folder name for --out.")

    summary = train(load_config(config, overrides or []), data, out, stage=stage, resume=resume,
                    progress=sys.stderr.isatty(), overwrite=overwrite)
    if not summary["main_process"]:  # under `accelerate launch`, one process reports
        return
    for name, result in summary["stages"].items():
        best = result.get("best") or {}
        score = f"{best['score']:.4e}" if isinstance(best.get("score"), float) else "n/a"
        typer.echo(f"stage {name}: {result['steps']} steps, {result['epochs']} epochs; best {best.get('key')} {score}")
    if summary.get("model"):
        typer.echo(f"wrote {summary['model']}")


@app.command("evaluate")
@user_errors
def evaluate_command(
    run: Path = typer.Argument(..., help="Run folder written by `voxmesh train` (or a checkpoint folder)."),
    data: Path = typer.Option(..., "--data", help="Dataset folder in the shared layout."),
    split: str = typer.Option("test", help="train, val, test or test_unseen."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report path; .md and .json are written (default RUN/eval_<split>)."),
    preset: Optional[str] = typer.Option(None, help="Dataset preset (default: the one the model was trained with)."),
    fps: Optional[float] = typer.Option(None, help="Frame rate for the generic preset (default: the model's)."),
    seed: int = typer.Option(0, help="Seed handed to generate (for stochastic methods)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    emotion_source: str = typer.Option("heard", "--emotion-source",
                                       help="Emotion-aware models: 'heard' (from the voice) or 'label' (the dataset's)."),
    samples: int = typer.Option(1, help="Motions drawn a sequence with seeds seed, seed+1, ...; 2 or more adds diversity."),
    steps: Optional[int] = typer.Option(None, help="Sampling steps of diffusion models (default: the checkpoint's)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report (.md and .json)."),
) -> None:
    """Score a trained model on a split beside the static and mean baselines."""
    from voxmesh.eval.evaluate import evaluate_run, format_evaluation

    result = evaluate_run(run, data, split=split, out=out, preset=preset, fps=fps, seed=seed, device=device,
                          progress=sys.stderr.isatty(), emotion_source=emotion_source,
                          samples=samples, steps=steps, overwrite=overwrite)
    typer.echo(format_evaluation(result).rstrip())
    typer.echo(f"wrote {result['written']['markdown']} and {result['written']['json']}")


@app.command("benchmark")
@user_errors
def benchmark_command(
    data: Path = typer.Option(..., "--data", help="Dataset folder (synthesized when missing: tiny with --quick, else small)."),
    runs: Path = typer.Option(..., "--runs", help="Runs folder: RUNS/<method> is reused when its model exists, else trained."),
    quick: bool = typer.Option(False, "--quick", help="Tiny models, 3 steps each, on the tiny dataset: the whole report "
                                                      "in about a minute (checks the pipeline, not the methods)."),
    out: Path = typer.Option(Path("docs/benchmarks.md"), "--out", help="Report; the .json goes beside it, the plots "
                                                                       "into a folder of its name."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    methods: Optional[list[str]] = typer.Option(None, "--method", help="Only this method (repeatable; default: "
                                                                       "faceformer, codetalker, gldi, emoface)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report (.md, .json and plots)."),
    update: bool = typer.Option(False, "--update", help="Re-measure only the --method(s) given and keep the other "
                                                        "methods' rows of the existing report."),
) -> None:
    """Every method side by side: train what is missing, evaluate, time, plot, write the report."""
    from voxmesh.benchmark import METHODS, run_benchmark

    result = run_benchmark(data, runs, out=out, quick=quick, device=device, progress=sys.stderr.isatty(),
                           methods=tuple(methods) if methods else METHODS, overwrite=overwrite, update=update)
    typer.echo(f"wrote {result['written']['markdown']}, {result['written']['json']} and "
               f"{len(result['figures']) + bool((result.get('strip') or {}).get('path'))} plots in "
               f"{Path(result['figures']['quality']).parent} ({result['seconds']:.0f} s)")


@app.command("animate")
@user_errors
def animate_command(
    speech: list[Path] = typer.Argument(..., help="Speech files (wav, flac, ogg, mp3), any rate or channel count."),
    output: Path = typer.Option(..., "-o", "--output", help="OUT.mp4 | OUT.npy | OUT.glb | a folder of .obj/.ply "
                                "frames | ARKit weights: OUT.csv (Live Link Face), OUT.json, OUT.arkit.glb; with "
                                "several inputs, a folder that gets one file each."),
    model: str = typer.Option("default", help="A checkpoint folder (or training run) or a built-in name."),
    speaker: Optional[str] = typer.Option(None, help="Speaking style: a training speaker's name or index "
                                          "(default: a mixture of all)."),
    emotion: Optional[str] = typer.Option(None, help="Emotion for models that take one (EmoFace)."),
    intensity: Optional[int] = typer.Option(None, help="1 (normal) or 2 (strong), for models that take it."),
    seed: int = typer.Option(0, help="The same seed gives the same motion."),
    samples: int = typer.Option(1, help="Several motions (seeds seed, seed+1, ...) for diffusion models."),
    steps: Optional[int] = typer.Option(None, help="Sampling steps for diffusion models."),
    template: Optional[Path] = typer.Option(None, help="Your own neutral face (.obj/.ply/.npy) of the model's topology."),
    fps: Optional[float] = typer.Option(None, help="Frame rate of the output (default: the model's)."),
    side_by_side: Optional[Path] = typer.Option(None, "--side-by-side", help="Ground truth .npy shown beside (.mp4)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="With several inputs or a folder: mp4, npy, glb, obj, ply, "
                                      "csv, json or arkit.glb (a folder -o without it gets .obj frames)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when this torch build sees a GPU)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads (default: OMP_NUM_THREADS if set, else the cores "
                                          "that are idle now, at most 4: taking busy cores makes it slower)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (only what voxmesh wrote)."),
    visemes: Optional[str] = typer.Option(None, help="Add a viseme track to a .csv or .json: oculus (sil PP ... ou) "
                                          "or rpm (Ready Player Me's viseme_* names); with --avatar, drive its "
                                          "viseme targets too."),
    avatar: Optional[Path] = typer.Option(None, help="A glTF/GLB avatar with ARKit-named morph targets: -o NAME.glb "
                                          "gets a copy of it that speaks."),
) -> None:
    """Turn speech into an animated face: video with sound, arrays, mesh frames, glTF or ARKit weights."""
    from voxmesh.animate import FRAME_FILE, OUTPUT_FORMATS, output_format
    from voxmesh.data.presets import check_fps
    from voxmesh.files import refuse_existing
    from voxmesh.runtime import choose_threads, resolve_device, using_threads

    if samples < 1:
        raise VoxmeshError(f"--samples {samples} must be 1 or more; leave it out for one motion.")
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise VoxmeshError(f"--format {fmt} is not a format voxmesh writes; give one of {', '.join(OUTPUT_FORMATS)}.")
    for path in speech:
        if path.is_dir():
            raise VoxmeshError(f"Audio file {path} is a folder; give the sound files in it (such as {path}/*.wav).")
        if not path.is_file():
            raise VoxmeshError(f"Audio file {path} does not exist; check the path.")
    if fps is not None:
        check_fps(fps)
    batch = len(speech) > 1 or samples > 1
    if batch and output.suffix:
        raise VoxmeshError(f"With several inputs or samples -o names a folder, not {output}; give a folder name.")
    kind = fmt or ("mp4" if batch else None)
    jobs = []  # (speech file, sample, output)
    for path in speech:
        for k in range(samples):
            if batch:
                name = path.stem + (f"_sample{k}" if samples > 1 else "")
                target = output / (name if kind in ("obj", "ply") else f"{name}.{kind}")
            else:
                target = output
            output_format(target, kind)  # an unknown extension is refused here, before any work
            if visemes is not None or avatar is not None:
                from voxmesh.render.arkit_files import check_arkit_output

                check_arkit_output(output_format(target, kind), None, visemes, avatar=avatar is not None)
            jobs.append((path, k, target))
    if avatar is not None:
        from voxmesh.render.arkit_files import read_avatar

        read_avatar(avatar)  # a bad avatar is refused before the model loads
    # Every output is checked before the first is written: a batch is refused whole, not halfway.
    seen: dict[Path, Path] = {}
    for path, _, target in jobs:
        if target in seen and seen[target] != path:
            raise VoxmeshError(f"Inputs {seen[target]} and {path} would both write {target}; rename one of them "
                               "or animate them in separate runs.")
        seen[target] = path
    frames = kind in ("obj", "ply") or (kind is None and output_format(output) in ("obj", "ply"))
    refuse_existing(*(target for _, _, target in jobs), overwrite=overwrite,
                    folder_of=FRAME_FILE.match if frames else None)
    with using_threads(choose_threads(threads)):
        _animate_jobs(jobs, kind, model, resolve_device(device), template, fps=fps, side_by_side=side_by_side,
                      overwrite=overwrite, speaker=speaker, emotion=emotion, intensity=intensity, seed=seed,
                      steps=steps, visemes=visemes, avatar=avatar)


def _animate_jobs(jobs: list, kind: str | None, model: str, device, template: Path | None, *, seed: int,
                  **options) -> None:
    from voxmesh.animate import animate_to_file, load_model

    with _status(f"loading model {model}"):
        animation = load_model(model, device=str(device))
    if template is not None:
        from voxmesh.mesh.template import load_face

        # Refuse an unreadable face, or one in millimetres, before anything is written.
        load_face(template, reference=animation.template.vertices)
    for path, k, target in jobs:
        result = animate_to_file(animation, path, target, fmt=kind, progress=sys.stderr.isatty(), seed=seed + k,
                                 template=template, **options)
        frames = f" ({result['frames']} .{result['format']} frames)" if result["format"] in ("obj", "ply") else ""
        typer.echo(f"wrote {result['path']}{frames}")
        if "driven" in result:  # an avatar: what it has of ARKit's 52
            lacks = f"; it lacks {', '.join(result['missing'])}" if result["missing"] else ""
            typer.echo(f"drove {len(result['driven'])} ARKit names on {', '.join(result['nodes'])}{lacks}")


@app.command("demo")
@user_errors
def demo_command(
    out: Path = typer.Argument(Path("out"), help="Folder for the demo's files (its demo_* files are replaced)."),
) -> None:
    """Speak a sentence with espeak-ng and animate it with the shipped model: OUT/demo.mp4 with
    the sound, OUT/demo.glb, stills at lip closures and open vowels, the head's contact sheet."""
    from voxmesh.demo import main as run_demo

    code = run_demo(str(out))
    if code:
        raise typer.Exit(code)


if __name__ == "__main__":
    app()

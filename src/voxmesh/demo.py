"""`make demo`: the most complete path voxmesh has today, end to end on generated data.

1. synthesize the tiny synthetic dataset (espeak-ng speech, procedural head, exact
   phoneme timings) and check it;
2. render the contact sheet of the head, its visemes, expressions and identities;
3. render one test clip to an .mp4 with its sound, and write it as an animated .glb;
4. score a still-face baseline (the template, not moving) on the test split with the
   metric suite, as `voxmesh evaluate-predictions` does for any project's outputs.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np


def main(out: str = "out") -> int:
    from voxmesh.data import check_dataset, open_dataset
    from voxmesh.data.synthetic.dataset import synthesize_dataset
    from voxmesh.data.synthetic.sheet import render_contact_sheet, vertex_colors_for
    from voxmesh.eval.predictions import evaluate_prediction_folder, format_metrics_table
    from voxmesh.files import atomic_path
    from voxmesh.render import to_video
    from voxmesh.render.export import write_glb

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = out_dir / "synthetic-tiny"
    print("1/4 synthesizing the tiny synthetic dataset ...", flush=True)
    summary = synthesize_dataset(data_dir, preset="tiny", seed=0, overwrite=True, progress=True)
    report = check_dataset(data_dir)
    print("\n".join("    " + line for line in report.summary_lines()))
    if not report.ok:
        print("\n".join(report.problems))
        return 1

    print("2/4 rendering the contact sheet ...", flush=True)
    sheet = render_contact_sheet(out_dir / "contact_sheet.png")

    print("3/4 rendering a test clip with its sound ...", flush=True)
    dataset = open_dataset(data_dir)
    test = dataset.split("test")
    clip = max(test, key=lambda s: s.num_frames if s.emotion != "neutral" else 0)
    topology = dataset.topology()
    to_video(clip.vertices, topology.faces, clip.audio, out_dir / "demo.mp4", fps=clip.fps,
             vertex_colors=vertex_colors_for(topology), progress=True)
    glb = write_glb(clip.vertices, topology.faces, out_dir / "demo.glb", clip.fps, base=clip.template,
                    vertex_colors=vertex_colors_for(topology))

    print("4/4 scoring a still-face baseline on the test split ...", flush=True)
    preds = out_dir / "still-face-predictions"
    shutil.rmtree(preds, ignore_errors=True)
    preds.mkdir()
    for sequence in test:
        still = np.repeat(sequence.template[None], sequence.num_frames, axis=0)
        np.save(preds / f"{sequence.name}.npy", still.reshape(sequence.num_frames, -1))
    result = evaluate_prediction_folder(preds, data_dir, split="test")
    print(format_metrics_table(result))
    with atomic_path(out_dir / "still_face_metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))

    print(f"\nmade, in {out_dir}/:")
    print(f"  synthetic-tiny/          {summary['clips']} clips in the shared layout ({summary['seconds']:.0f} s of speech)")
    print(f"  contact_sheet.png        the head, its visemes, expressions and identities ({sheet.shape[1]}x{sheet.shape[0]})")
    print(f"  demo.mp4                 '{clip.text}' ({clip.emotion}, {clip.duration:.1f} s) with sound")
    print(f"  demo.glb                 the same motion as glTF: {glb['morph_targets']} morph targets animated at "
          f"{clip.fps:g} fps (plays in Blender and three.js)")
    print("  still_face_metrics.json  LVE/EVE/FDD/MVE/MOD of a face that does not move: the floor any model must beat")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""One sentence in two emotions, side by side, with its sound: what EmoFace's emotion
stream adds to the same lip motion.

    python scripts/emotion_side_by_side.py RUN --data DATA [--sequence NAME]
        [--emotions surprised angry] [-o docs/media/emoface_two_emotions.mp4]

RUN is an EmoFace run folder (or checkpoint folder). The sentence is a test sequence of
DATA (the first one by default); both renditions are generated from its audio with an
explicit emotion label that overrides the one heard in the voice, in the sequence's
speaker style (or the first training speaker's for an unseen subject), and rendered by
voxmesh's renderer: left the first emotion, right the second. A still of the two at the
frame where they differ most is written beside the video (.png) for the document.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from voxmesh.errors import VoxmeshError


def side_by_side(run: Path, data: Path, sequence_name: str | None, emotions: list[str], out: Path,
                 intensity: int = 2, size: int = 384) -> dict:
    from voxmesh.animate import load_model
    from voxmesh.data.layout import FaceDataset
    from voxmesh.render.rasterizer import Renderer
    from voxmesh.render.video import encode_video
    from voxmesh.data.synthetic.sheet import vertex_colors_for

    animation = load_model(run)
    if not animation.takes_emotion:
        raise VoxmeshError(f"Model {run} does not take an emotion; give an EmoFace run.")
    for emotion in emotions:
        if emotion not in animation.emotions:
            raise VoxmeshError(f"Emotion '{emotion}' is not one of this model's ({', '.join(animation.emotions)}).")
    dataset = FaceDataset(data, preset="generic", fps=animation.fps)
    tests = [r for r in dataset.all_records if r.split in ("test", "test_unseen")]
    record = next((r for r in tests if sequence_name in (None, r.name)), None)
    if record is None:
        raise VoxmeshError(f"Dataset {data} has no test sequence named '{sequence_name}'; pick one from its manifest.")
    sequence = dataset.load(record)
    speaker = sequence.subject if sequence.subject in animation.speakers else None
    renditions = [animation.animate(sequence.audio, speaker=speaker, emotion=e, intensity=intensity, seed=0,
                                    template=sequence.template) for e in emotions]
    frames = min(len(r) for r in renditions)
    colors = vertex_colors_for(animation.template)
    renderer = Renderer(animation.faces, width=size, height=size, reference_vertices=sequence.template,
                        vertex_colors=colors)

    def pictures():
        for k in range(frames):
            yield np.concatenate([renderer.render(r[k]) for r in renditions], axis=1)

    out.parent.mkdir(parents=True, exist_ok=True)
    encode_video(pictures(), out, animation.fps, size * len(emotions), size, sequence.audio)
    difference = np.linalg.norm(renditions[0][:frames] - renditions[1][:frames], axis=-1)
    widest = int(difference.mean(axis=1).argmax())
    still = out.with_suffix(".png")
    from voxmesh.render.sheet import contact_sheet

    contact_sheet([renderer.render(r[widest]) for r in renditions], emotions, columns=len(emotions), path=still)
    return {"video": str(out), "still": str(still), "sequence": sequence.name, "text": sequence.text,
            "emotions": emotions, "frames": frames, "seconds": frames / animation.fps,
            "mean_vertex_distance_m": float(difference.mean()), "max_vertex_distance_m": float(difference.max()),
            "still_frame": widest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sequence", default=None)
    parser.add_argument("--emotions", nargs=2, default=["surprised", "angry"])
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/media/emoface_two_emotions.mp4"))
    args = parser.parse_args(argv)
    try:
        result = side_by_side(args.run, args.data, args.sequence, args.emotions, args.out)
    except VoxmeshError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`make demo`: from a sound file to a talking face with the shipped default model.

1. speak a short sentence with espeak-ng (the project makes its own sample, so nothing
   is downloaded and nothing needs a licence) and write it as out/demo_speech.wav;
2. `voxmesh animate out/demo_speech.wav -o out/demo.mp4` and `-o out/demo.glb` with the
   default model (GLDiTalker + Whisper tiny.en, shipped in the package);
3. a strip of stills at a plosive (lips closed) and an open vowel, picked from the
   sample's phoneme timings, so a person can check the lips at a glance
   (out/demo_frames.png), and the contact sheet of the procedural head.
"""

from __future__ import annotations

import sys
from pathlib import Path

SENTENCE = "Bob bought a big pot of hot apple pie, and papa ate half of it."


def main(out: str = "out") -> int:
    import soundfile

    from voxmesh.animate import animate_to_file, load_model
    from voxmesh.benchmark import speech_frames
    from voxmesh.data.synthetic.sheet import render_contact_sheet, vertex_colors_for
    from voxmesh.data.synthetic.speech import synthesize
    from voxmesh.errors import VoxmeshError
    from voxmesh.eval.metrics import mouth_opening
    from voxmesh.files import atomic_path
    from voxmesh.render.rasterizer import Renderer
    from voxmesh.render.sheet import contact_sheet

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print("1/3 speaking the demo sentence with espeak-ng ...", flush=True)
    clip = synthesize(SENTENCE)
    speech = out_dir / "demo_speech.wav"
    with atomic_path(speech) as tmp:  # tmp ends in .wav too: soundfile picks the format from it
        soundfile.write(tmp, clip.audio, clip.sample_rate)

    print("2/3 animating it with the default model ...", flush=True)
    try:
        animation = load_model("default")
    except VoxmeshError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    video = animate_to_file(animation, speech, out_dir / "demo.mp4", overwrite=True, progress=True, seed=0)
    glb = animate_to_file(animation, speech, out_dir / "demo.glb", overwrite=True, seed=0)

    print("3/3 stills at plosives and open vowels, and the contact sheet ...", flush=True)
    vertices = animation.animate(speech, seed=0)
    colors = vertex_colors_for(animation.template)
    renderer = Renderer(animation.faces, width=256, height=256, reference_vertices=animation.template.vertices,
                        vertex_colors=colors)
    picks = speech_frames(clip.phonemes, animation.fps, len(vertices), count=6)
    stills = [renderer.render(vertices[frame]) for _, frame in picks]
    contact_sheet(stills, [f"{label} {frame / animation.fps:.2f} s" for label, frame in picks], columns=len(stills),
                  path=out_dir / "demo_frames.png")
    sheet = render_contact_sheet(out_dir / "contact_sheet.png")
    opening = mouth_opening(vertices, animation.template.vertex_pairs["inner_lip_pairs"])
    print(f"\nmade, in {out_dir}/:")
    print(f"  demo_speech.wav    '{SENTENCE}' ({clip.duration:.1f} s, espeak-ng)")
    print(f"  demo.mp4           {video['frames']} frames at {video['fps']:g} fps with the sound (front view)")
    print(f"  demo.glb           glTF 2.0: {glb.get('morph_targets')} morph targets animated at {video['fps']:g} fps "
          "(plays in Blender and three.js)")
    labels = ", ".join(f"{label} at {frame / animation.fps:.2f} s" for label, frame in picks)
    print(f"  demo_frames.png    left to right: {labels}")
    values = ", ".join(f"{opening[frame] * 1000:.1f}" for _, frame in picks)
    print(f"                     mouth opening there (mm): {values}")
    print(f"  contact_sheet.png  the procedural head: visemes, expressions, identities ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

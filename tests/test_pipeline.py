"""voxmesh.TalkingFacePipeline: from_pretrained / save_pretrained, a call that gives an
AnimationOutput, a stream of blocks that equals it, and Conditions checked in one
sentence. One tiny FaceFormer is trained for the module (the bad-input corpus's)."""

from __future__ import annotations

import numpy as np
import pytest
from test_bad_inputs import dataset, run, tone, write_wav  # noqa: F401 (module fixtures)

import voxmesh
from voxmesh.errors import VoxmeshError

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_from_pretrained_call_and_stream(run, tmp_path):
    pipeline = voxmesh.TalkingFacePipeline.from_pretrained(run)
    assert pipeline.folder == run / "model" and voxmesh.load_model(run).fps == pipeline.fps
    wav = write_wav(tmp_path / "a.wav", 0.5)
    output = pipeline(wav, speaker="s1")
    assert isinstance(output, voxmesh.AnimationOutput) and output.vertices.shape == (15, 42, 3)
    assert output.fps == 30.0 and output.seconds == 0.5 and output.conditions.speaker == "s1"
    assert np.array_equal(output.faces, pipeline.faces)
    blocks = list(pipeline.stream(wav, conditions=voxmesh.Conditions(speaker="s1")))
    np.testing.assert_array_equal(np.concatenate(blocks), output.vertices)
    samples = pipeline(tone(0.5), sample_rate=16000, speaker="s1")  # an array instead of a file
    np.testing.assert_allclose(samples.vertices, output.vertices, atol=1e-4)


def test_save_pretrained_round_trip(run, tmp_path):
    pipeline = voxmesh.TalkingFacePipeline.from_pretrained(run)
    saved = pipeline.save_pretrained(tmp_path / "mine")
    again = voxmesh.TalkingFacePipeline.from_pretrained(saved)
    wave = tone(0.4)
    np.testing.assert_array_equal(again(wave).vertices, pipeline(wave).vertices)
    with pytest.raises(VoxmeshError, match="already exists"):
        pipeline.save_pretrained(tmp_path / "mine")


def test_conditions_are_checked_before_any_work(run):
    pipeline = voxmesh.TalkingFacePipeline.from_pretrained(run)
    with pytest.raises(VoxmeshError, match="'mood' is not a condition"):
        pipeline(tone(0.4), mood="happy")
    with pytest.raises(VoxmeshError, match="nobody"):
        pipeline.stream(tone(0.4), speaker="nobody")  # refused when called, before the first block
    with pytest.raises(VoxmeshError, match="takes no emotion"):
        pipeline(tone(0.4), conditions=voxmesh.Conditions(emotion="happy"))

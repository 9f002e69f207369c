import numpy as np
import pytest
import trimesh

from voxmesh.errors import VoxmeshError
from voxmesh.render import probe_media, to_video


def test_video_with_sound_has_both_streams_and_right_length(tmp_path):
    sphere = trimesh.creation.icosphere(2, radius=0.1)
    t = np.arange(15)[:, None, None]
    vertices = np.asarray(sphere.vertices)[None] * (1 + 0.05 * np.sin(t / 3.0))  # 15 frames, 0.5 s at 30 fps
    audio = 0.2 * np.sin(2 * np.pi * 220 * np.arange(8000) / 16000).astype(np.float32)
    path = to_video(vertices, sphere.faces, audio, tmp_path / "clip.mp4", fps=30, width=96, height=96)
    info = probe_media(path)
    assert "h264" in info["video"] and "96x96" in info["video"]
    assert info["audio"] is not None and "aac" in info["audio"]
    assert abs(info["duration"] - 0.5) < 0.1
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left


def test_bad_output_name_leaves_nothing(tmp_path):
    sphere = trimesh.creation.icosphere(1, radius=0.1)
    with pytest.raises(VoxmeshError, match="must end in .mp4"):
        to_video(np.asarray(sphere.vertices)[None], sphere.faces, None, tmp_path / "clip.avi")
    assert list(tmp_path.iterdir()) == []

"""The on-disk feature cache: two processes writing the same and different entries at
once (every entry loads whole and equal, no reader ever sees a torn file), the key is
the audio's content and the encoder's identity (changed audio misses its own entry
only, another encoder misses them all), and a damaged entry is computed again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from voxmesh.audio import build_encoder
from voxmesh.audio.features import FeatureCache

pytestmark = pytest.mark.usefixtures("torch_one_thread")

MEL = {"kind": "mel", "dim": 16, "hidden": 16, "freeze": True}


def clip(number: int, seconds: float = 0.3) -> np.ndarray:
    """A clip of its own: a tone whose pitch and phase follow ``number``."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * (120 + 37 * number) * t + number)).astype(np.float32)


# The worker: waits for GO (so both start together once imported), then for each round
# a fresh cache folder, the entries in its own order; after every lookup it loads every
# entry visible in the folder, counting any that does not load whole ("torn").
WORKER = r"""
import json, random, sys, time
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[5])
from test_feature_cache import MEL, clip
from voxmesh.audio import build_encoder
from voxmesh.audio.features import FeatureCache

root, go, ids, rounds = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
encoder = build_encoder(MEL)
clips = {i: clip(i) for i in ids}
expected = {i: encoder.encode(clips[i]) for i in ids}
order = random.Random(ids[-1])
while not go.exists():
    time.sleep(0.001)
report = {"hits": 0, "misses": 0, "torn": 0, "wrong": 0, "loads": 0}
for number in range(rounds):
    cache = FeatureCache(encoder, root=root / f"round{number}")
    for i in order.sample(ids, len(ids)):
        if not np.array_equal(cache.get(clips[i]), expected[i]):
            report["wrong"] += 1
        for path in cache.root.iterdir() if cache.root.is_dir() else []:
            if path.name.startswith(".") or path.suffix != ".npy":
                continue  # a temporary file: not an entry yet
            try:
                features = np.load(path)
                report["loads"] += 1
                if features.ndim != 2 or features.shape[1] != 16:
                    report["torn"] += 1
            except Exception:
                report["torn"] += 1
    report["hits"] += cache.hits
    report["misses"] += cache.misses
print(json.dumps(report))
"""


def test_two_processes_writing_the_same_entries_at_once(tmp_path):
    shared = list(range(10))
    own = {"a": [10, 11, 12], "b": [13, 14, 15]}
    rounds = 8
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), str(go),
                                 json.dumps(shared + own[name]), str(rounds), str(Path(__file__).parent)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("a", "b")]
    time.sleep(0.5)
    go.touch()  # workers that are not ready yet start when they are; both race on the shared entries
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for report in reports:
        assert report["torn"] == 0 and report["wrong"] == 0 and report["loads"] > 0, report
        assert report["hits"] + report["misses"] == rounds * 13
    # Every entry written by both (or either) loads whole and equals the encoder's output.
    encoder = build_encoder(MEL)
    for number in range(rounds):
        cache = FeatureCache(encoder, root=tmp_path / "cache" / f"round{number}")
        names = sorted(p.name for p in cache.root.iterdir())
        assert names == sorted(cache.path_for(clip(i)).name for i in shared + own["a"] + own["b"])  # no temporary files
        for i in shared + own["a"] + own["b"]:
            np.testing.assert_array_equal(np.load(cache.path_for(clip(i))), encoder.encode(clip(i)))
            assert cache.get(clip(i)) is not None
        assert (cache.hits, cache.misses) == (16, 0)
        mode = cache.path_for(clip(0)).stat().st_mode & 0o777
        assert mode == 0o666 & ~_umask(), oct(mode)  # not mkstemp's private 0o600


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_changed_audio_misses_its_own_entry_only_and_another_encoder_misses_all(tmp_path):
    clips = [clip(i) for i in range(4)]
    encoder = build_encoder(MEL)
    first = FeatureCache(encoder, root=tmp_path)
    computed = [first.get(c) for c in clips]
    assert (first.hits, first.misses) == (0, 4)

    # The same encoder built again (another process, another day) finds every entry.
    again = FeatureCache(build_encoder(MEL), root=tmp_path)
    for c, features in zip(clips, computed):
        np.testing.assert_array_equal(again.get(c), features)
    assert (again.hits, again.misses) == (4, 0)

    changed = [c.copy() for c in clips]
    changed[2][100] += 1e-3  # one sample of one clip
    cache = FeatureCache(encoder, root=tmp_path)
    results = [cache.get(c) for c in changed]
    assert (cache.hits, cache.misses) == (3, 1)
    assert [cache.path_for(c) == first.path_for(o) for c, o in zip(changed, clips)] == [True, True, False, True]
    np.testing.assert_array_equal(results[2], encoder.encode(changed[2]))

    # Another encoder config (other sizes: another name; another seed: other weights) misses everything.
    for other in ({**MEL, "hidden": 24}, {**MEL, "seed": 1}):
        cache = FeatureCache(build_encoder(other), root=tmp_path)
        assert cache.root != first.root
        for c in clips:
            cache.get(c)
        assert (cache.hits, cache.misses) == (0, 4), other
    # and the first encoder's entries are still there
    cache = FeatureCache(encoder, root=tmp_path)
    assert all(cache.get(c) is not None for c in clips) and (cache.hits, cache.misses) == (4, 0)


@pytest.mark.parametrize("damage", ["empty", "cut", "garbage", "other shape"])
def test_a_damaged_entry_is_computed_again(tmp_path, damage):
    encoder = build_encoder(MEL)
    cache = FeatureCache(encoder, root=tmp_path)
    audio = clip(0)
    good = cache.get(audio)
    path = cache.path_for(audio)
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "cut":
        path.write_bytes(data[:-10])
    elif damage == "garbage":
        path.write_bytes(b"\0" * len(data))
    else:
        np.save(path, np.zeros((3, 5), np.float32))
    again = FeatureCache(encoder, root=tmp_path)
    np.testing.assert_array_equal(again.get(audio), good)
    assert (again.hits, again.misses) == (0, 1)
    assert path.read_bytes() == data  # replaced by the whole entry

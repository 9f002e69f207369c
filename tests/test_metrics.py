"""voxmesh.eval.metrics against hand-computed values on tiny meshes, against a
straightforward reimplementation of the community scripts on random data, and against
torchmetrics' LipVertexError."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch

from voxmesh.errors import VoxmeshError
from voxmesh.eval import metrics
from voxmesh.eval.metrics import (
    METRIC_UNITS,
    MetricAccumulator,
    diversity,
    emotional_vertex_error,
    evaluate_sequences,
    lip_vertex_error,
    mean_vertex_error,
    mouth_open_difference,
    mouth_opening,
    upper_face_dynamics_deviation,
)

# 2 frames, 3 vertices; the ground truth is all zeros, so the errors are the offsets below.
# frame 0: squared distances 1, 4, 9 (distances 1, 2, 3)
# frame 1: squared distances 25, 0, 0 (distances 5, 0, 0)
PRED = np.array(
    [
        [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]],
        [[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ]
)
GT = np.zeros((2, 3, 3))


def reference_metrics(preds, gts, templates, lips, upper):
    """Whole-array restatement of the community LVE/FDD formulas (no chunking), as a reference."""
    gt_all, pred_all, fdd = [], [], []
    for p, g, t in zip(preds, gts, templates):
        p = p[: len(g)]
        gt_all.extend(list(g))
        pred_all.extend(list(p))
        motion_gt, motion_pred = g - t, p - t
        gt_std = np.mean(np.std(np.sum(np.square(motion_gt[:, upper]), axis=2), axis=0))
        pred_std = np.mean(np.std(np.sum(np.square(motion_pred[:, upper]), axis=2), axis=0))
        fdd.append(gt_std - pred_std)
    gt_all, pred_all = np.array(gt_all), np.array(pred_all)
    lve = np.mean(np.max(np.sum(np.square(gt_all[:, lips] - pred_all[:, lips]), axis=2), axis=1))
    return lve, sum(fdd) / len(fdd)


def random_set(seed=0, lengths=(7, 12, 3), num_vertices=40, extra=(0, 2, 1)):
    rng = np.random.default_rng(seed)
    templates = [rng.normal(size=(num_vertices, 3)) for _ in lengths]
    gts = [t + 0.1 * rng.normal(size=(n, num_vertices, 3)) for t, n in zip(templates, lengths)]
    preds = [t + 0.1 * rng.normal(size=(n + e, num_vertices, 3)) for t, n, e in zip(templates, lengths, extra)]
    return preds, gts, templates


# ---- hand-computed values ----------------------------------------------------------------

def test_lip_vertex_error_by_hand():
    # lips {0, 1}: frame maxima 4 and 25 -> 14.5
    assert lip_vertex_error(PRED, GT, [0, 1]) == pytest.approx(14.5, rel=1e-12)
    # only vertex 2: 9 and 0 -> 4.5
    assert lip_vertex_error(PRED, GT, [2]) == pytest.approx(4.5, rel=1e-12)


def test_emotional_vertex_error_by_hand():
    # vertices {1, 2}: frame maxima 9 and 0 -> 4.5
    assert emotional_vertex_error(PRED, GT, np.array([1, 2])) == pytest.approx(4.5, rel=1e-12)


def test_mean_vertex_error_by_hand():
    # distances 1, 2, 3, 5, 0, 0 -> 11 / 6 (plain, not squared, distances)
    assert mean_vertex_error(PRED, GT) == pytest.approx(11 / 6, rel=1e-12)


def test_upper_face_dynamics_deviation_by_hand_sign_and_absolute():
    template = np.zeros((2, 3))
    template[0] = [1.0, 0.0, 0.0]
    # Sequence A, vertex 0 displaced by (1,0,0) then (2,0,0): squared 1, 4 -> std 1.5 (ddof=0).
    gt_a = np.tile(template, (2, 1, 1))
    gt_a[0, 0, 0] += 1.0
    gt_a[1, 0, 0] += 2.0
    # ... the prediction holds a constant displacement: std 0 -> deviation +1.5.
    pred_a = np.tile(template, (2, 1, 1))
    pred_a[:, 0, 0] += 1.0
    # Sequence B: the ground truth is still (std 0); the prediction moves vertex 0 by
    # (0,1,0) then (0,3,0): squared 1, 9 -> std 4 -> deviation -4.
    gt_b = np.tile(template, (2, 1, 1))
    pred_b = np.tile(template, (2, 1, 1))
    pred_b[0, 0, 1] += 1.0
    pred_b[1, 0, 1] += 3.0

    assert upper_face_dynamics_deviation(pred_a, gt_a, template, [0]) == pytest.approx(1.5, rel=1e-12)
    assert upper_face_dynamics_deviation(pred_b, gt_b, template, [0]) == pytest.approx(-4.0, rel=1e-12)
    both = ([pred_a, pred_b], [gt_a, gt_b])
    # FDD averages sequences: (1.5 - 4) / 2; the absolute variant (1.5 + 4) / 2.
    assert upper_face_dynamics_deviation(*both, template, [0]) == pytest.approx(-1.25, rel=1e-12)
    absolute = upper_face_dynamics_deviation(*both, [template, template], [0], absolute=True)
    assert absolute == pytest.approx(2.75, rel=1e-12)
    # Vertex 1 never moves: its std of 0 halves the mean over the two upper-face vertices.
    assert upper_face_dynamics_deviation(pred_a, gt_a, template, [0, 1]) == pytest.approx(0.75, rel=1e-12)


def test_mouth_open_difference_by_hand():
    pairs = np.array([[0, 1], [2, 3]])
    gt = np.zeros((2, 4, 3))
    pred = np.zeros((2, 4, 3))
    # frame 0: gt gaps 1 and 3 (opening 2), pred gaps 2 and 2 (opening 2) -> 0
    gt[0, 0] = [0, 1, 0]
    gt[0, 2] = [0, 3, 0]
    pred[0, 0] = [0, 2, 0]
    pred[0, 2] = [0, 2, 0]
    # frame 1: gt closed (0), pred gaps 1 and 5 (opening 3) -> 3
    pred[1, 0] = [0, 0, 1]
    pred[1, 2] = [3, 4, 0]
    assert mouth_open_difference(pred, gt, pairs) == pytest.approx(1.5, rel=1e-12)
    # the per-frame opening it compares, for one sequence ([T, V, 3] or [T, V*3])
    np.testing.assert_allclose(mouth_opening(pred, pairs), [2.0, 3.0], rtol=1e-12)
    np.testing.assert_allclose(mouth_opening(gt.reshape(2, -1), pairs), [2.0, 0.0], rtol=1e-12)
    with pytest.raises(VoxmeshError, match="lip pairs"):
        mouth_opening(pred, [0, 1])


def test_diversity_by_hand():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(5, 6, 3))
    assert diversity(np.stack([base, base, base])) == 0.0
    offset = np.array([0.3, 0.0, 0.4])  # length 0.5
    assert diversity(np.stack([base, base + offset])) == pytest.approx(0.5, rel=1e-12)
    # Three samples 0, a, 2a with |a| = 1: pair distances 1, 2, 1 -> 4/3.
    step = np.array([0.0, 1.0, 0.0])
    three = np.stack([base, base + step, base + 2 * step])
    assert diversity(three) == pytest.approx(4 / 3, rel=1e-12)
    # A list of inputs averages the per-input values; [S, T, V*3] is accepted.
    flat = np.stack([base, base + offset]).reshape(2, 5, 18)
    assert diversity([flat, three]) == pytest.approx((0.5 + 4 / 3) / 2, rel=1e-12)
    assert diversity([torch.from_numpy(three)]) == pytest.approx(4 / 3, rel=1e-12)


# ---- pooling, lengths, layouts -------------------------------------------------------------

def test_frames_are_pooled_across_sequences():
    # Sequence A: 1 frame, lip error 1; sequence B: 3 frames, lip error 4 each.
    gt_a, gt_b = np.zeros((1, 2, 3)), np.zeros((3, 2, 3))
    pred_a, pred_b = gt_a.copy(), gt_b.copy()
    pred_a[:, 0, 0] = 1.0
    pred_b[:, 0, 0] = 2.0
    # Pooled: (1 + 3 * 4) / 4 = 3.25, not the mean of sequence means (1 + 4) / 2 = 2.5.
    assert lip_vertex_error([pred_a, pred_b], [gt_a, gt_b], [0, 1]) == pytest.approx(3.25, rel=1e-12)
    # MVE too: distances 1 (1 frame) and 2 (3 frames), 2 vertices each, half of them zero.
    assert mean_vertex_error([pred_a, pred_b], [gt_a, gt_b]) == pytest.approx((1 + 3 * 2) / 8, rel=1e-12)


def test_long_prediction_is_cut_to_ground_truth():
    garbage = np.full((4, 3, 3), 100.0)
    longer = np.concatenate([PRED, garbage])
    assert lip_vertex_error(longer, GT, [0, 1]) == pytest.approx(14.5, rel=1e-12)
    assert mean_vertex_error(longer, GT) == pytest.approx(11 / 6, rel=1e-12)
    assert mouth_open_difference(longer, GT, [[0, 1]]) == mouth_open_difference(PRED, GT, [[0, 1]])
    template = np.zeros((3, 3))
    assert upper_face_dynamics_deviation(longer, GT, template, [0, 1]) == pytest.approx(
        upper_face_dynamics_deviation(PRED, GT, template, [0, 1]), rel=1e-12
    )


def test_short_prediction_raises_naming_the_lengths():
    with pytest.raises(VoxmeshError, match=r"Prediction 1 has 1 frames but its ground truth has 2") as err:
        lip_vertex_error([PRED, PRED[:1]], [GT, GT], [0])
    assert str(err.value).count(".") == 1  # one sentence
    for metric in (lambda p, g: mean_vertex_error(p, g),
                   lambda p, g: mouth_open_difference(p, g, [[0, 1]]),
                   lambda p, g: upper_face_dynamics_deviation(p, g, np.zeros((3, 3)), [0])):
        with pytest.raises(VoxmeshError, match="1 frames"):
            metric(PRED[:1], GT)


def test_flattened_sequences_are_accepted():
    flat_gt = GT.reshape(2, 9)
    flat_pred = PRED.reshape(2, 9)
    assert lip_vertex_error(PRED, flat_gt, [0, 1]) == pytest.approx(14.5, rel=1e-12)
    assert lip_vertex_error(flat_pred, flat_gt, [0, 1]) == pytest.approx(14.5, rel=1e-12)
    assert mean_vertex_error([flat_pred], [flat_gt]) == pytest.approx(11 / 6, rel=1e-12)
    preds, gts, templates = random_set()
    flat = [g.reshape(len(g), -1) for g in gts]
    assert upper_face_dynamics_deviation(preds, flat, templates, [1, 5]) == pytest.approx(
        upper_face_dynamics_deviation(preds, gts, templates, [1, 5]), rel=1e-12
    )
    # A flattened template works too.
    assert upper_face_dynamics_deviation(preds[0], flat[0], templates[0].reshape(-1), [1, 5]) == pytest.approx(
        upper_face_dynamics_deviation(preds[0], gts[0], templates[0], [1, 5]), rel=1e-12
    )


def test_template_forms_agree():
    preds, gts, templates = random_set(seed=2, lengths=(6, 6, 6))
    want = upper_face_dynamics_deviation(preds, gts, templates, [0, 4, 9])
    # A stack of templates and a stack of sequences, as from one batch.
    stacked = upper_face_dynamics_deviation(np.stack([p[:6] for p in preds]), np.stack(gts), np.stack(templates),
                                            [0, 4, 9])
    assert stacked == pytest.approx(want, rel=1e-12)
    # One template for one sequence, as an array, a nested list or a [1, V*3] row.
    one = upper_face_dynamics_deviation(preds[0], gts[0], templates[0], [0, 4, 9])
    assert upper_face_dynamics_deviation(preds[0], gts[0], templates[0].tolist(), [0, 4, 9]) == pytest.approx(one)
    assert upper_face_dynamics_deviation(preds[0], gts[0], templates[0].reshape(1, -1), [0, 4, 9]) == pytest.approx(one)


def test_numpy_and_torch_inputs_agree():
    preds, gts, templates = random_set(seed=3)
    regions = {"lips": [0, 3, 7], "eyes": [10, 11], "forehead": [11, 12, 20], "upper_face": list(range(10, 30)),
               "inner_lip_pairs": np.array([[0, 1], [3, 4]])}
    from_numpy = evaluate_sequences(preds, gts, templates, regions)
    from_torch = evaluate_sequences([torch.from_numpy(p) for p in preds], [torch.from_numpy(g) for g in gts],
                                    [torch.from_numpy(t) for t in templates], regions)
    assert from_numpy.keys() == from_torch.keys()
    for key in from_numpy:
        assert from_torch[key] == pytest.approx(from_numpy[key], rel=1e-12), key
    # Lower precision inputs are promoted, not rejected.
    half = lip_vertex_error([torch.from_numpy(p).bfloat16() for p in preds],
                            [g.astype(np.float16) for g in gts], [0, 3, 7])
    assert half == pytest.approx(from_numpy["LVE"], rel=0.05)


def test_matches_community_script_on_random_data(monkeypatch):
    preds, gts, templates = random_set(seed=5)
    lips, upper = np.array([2, 9, 17, 33]), np.arange(20, 40)
    want_lve, want_fdd = reference_metrics(preds, gts, templates, lips, upper)
    assert lip_vertex_error(preds, gts, lips) == pytest.approx(want_lve, rel=1e-12)
    assert upper_face_dynamics_deviation(preds, gts, templates, upper) == pytest.approx(want_fdd, rel=1e-10)
    # Tiny chunks (one frame at a time) give the same numbers as whole arrays.
    full = evaluate_sequences(preds, gts, templates, {"lips": lips, "upper_face": upper,
                                                      "inner_lip_pairs": [[0, 1], [2, 3]]})
    full_div = diversity([np.stack([p[:3] for p in preds])])
    monkeypatch.setattr(metrics, "_CHUNK_BYTES", 1)
    chunked = evaluate_sequences(preds, gts, templates, {"lips": lips, "upper_face": upper,
                                                         "inner_lip_pairs": [[0, 1], [2, 3]]})
    for key in full:
        assert chunked[key] == pytest.approx(full[key], rel=1e-10), key
    assert diversity([np.stack([p[:3] for p in preds])]) == pytest.approx(full_div, rel=1e-12)


def test_memory_stays_bounded():
    # 1,000 frames of 2,000 vertices: 24 MB as float32, a float64 copy would be 48 MB.
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(1000, 2000, 3)).astype(np.float32)
    pred = gt + np.float32(0.01)
    tracemalloc.start()
    try:
        mean_vertex_error(pred, gt)
        upper_face_dynamics_deviation(pred, gt, gt[0], np.arange(2000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20


# ---- torchmetrics ------------------------------------------------------------------------

def test_lip_vertex_error_agrees_with_torchmetrics():
    tm_functional = pytest.importorskip("torchmetrics.functional.multimodal")
    tm_multimodal = pytest.importorskip("torchmetrics.multimodal")
    generator = torch.Generator().manual_seed(0)
    mouth_map = [0, 4, 5, 17, 30, 31]
    pred = torch.randn(25, 40, 3, generator=generator, dtype=torch.float64)
    gt = torch.randn(25, 40, 3, generator=generator, dtype=torch.float64)
    want = tm_functional.lip_vertex_error(pred, gt, mouth_map)
    assert lip_vertex_error(pred, gt, mouth_map) == pytest.approx(want.item(), rel=1e-12)
    # float32, as torchmetrics computes in the input dtype.
    want32 = tm_functional.lip_vertex_error(pred.float(), gt.float(), mouth_map)
    assert lip_vertex_error(pred.float(), gt.float(), mouth_map) == pytest.approx(want32.item(), rel=1e-5)
    # The module form pools the frames of every update, as ours pools a list.
    lengths, extra = (9, 3, 14), (0, 2, 1)
    preds = [torch.randn(n + e, 40, 3, generator=generator, dtype=torch.float64) for n, e in zip(lengths, extra)]
    gts = [torch.randn(n, 40, 3, generator=generator, dtype=torch.float64) for n in lengths]
    module = tm_multimodal.LipVertexError(mouth_map=mouth_map)
    for p, g in zip(preds, gts):
        module.update(p, g)
    assert lip_vertex_error(preds, gts, mouth_map) == pytest.approx(module.compute().item(), rel=1e-12)


# ---- evaluate_sequences -------------------------------------------------------------------

def test_evaluate_sequences_computes_what_its_regions_allow():
    preds, gts, templates = random_set(seed=7)
    eyes, forehead = np.array([10, 11, 12]), np.array([12, 13])
    regions = {"lips": np.array([0, 1, 2]), "eyes": eyes, "forehead": forehead,
               "upper_face": np.arange(10, 20), "inner_lip_pairs": np.array([[0, 3], [1, 4]])}
    result = evaluate_sequences(preds, gts, templates, regions)
    assert list(result) == ["LVE", "EVE", "FDD", "FDD_abs", "MVE", "MOD"]
    assert all(isinstance(v, float) for v in result.values())
    assert result["LVE"] == lip_vertex_error(preds, gts, regions["lips"])
    assert result["EVE"] == emotional_vertex_error(preds, gts, [10, 11, 12, 13])
    assert result["FDD"] == pytest.approx(upper_face_dynamics_deviation(preds, gts, templates, np.arange(10, 20)))
    assert result["FDD_abs"] == pytest.approx(
        upper_face_dynamics_deviation(preds, gts, templates, np.arange(10, 20), absolute=True))
    assert result["FDD_abs"] >= abs(result["FDD"])
    assert result["MVE"] == mean_vertex_error(preds, gts)
    assert result["MOD"] == mouth_open_difference(preds, gts, regions["inner_lip_pairs"])
    # An explicit emotion region wins over the eyes+forehead union.
    explicit = evaluate_sequences(preds, gts, templates, {**regions, "emotion": [30, 31]})
    assert explicit["EVE"] == emotional_vertex_error(preds, gts, [30, 31])
    # Without regions or templates only what can be computed is.
    assert list(evaluate_sequences(preds, gts, None, regions)) == ["LVE", "EVE", "MVE", "MOD"]
    assert list(evaluate_sequences(preds, gts, templates, {"eyes": eyes})) == ["MVE"]
    assert set(METRIC_UNITS) >= set(result) | {"diversity"}
    assert METRIC_UNITS["LVE"] == METRIC_UNITS["FDD"] == "m^2" and METRIC_UNITS["MVE"] == "m"



def accumulated(preds, gts, templates, regions, closures=None):
    """MetricAccumulator fed the sequences one at a time."""
    accumulator = MetricAccumulator(regions)
    for i, (p, g) in enumerate(zip(preds, gts)):
        accumulator.add(p, g, None if templates is None else templates[i], None if closures is None else closures[i])
    return accumulator


ACCUMULATOR_REGIONS = {"lips": np.array([0, 1, 2]), "eyes": np.array([10, 11, 12]), "forehead": np.array([12, 13]),
                       "upper_face": np.arange(10, 20), "inner_lip_pairs": np.array([[0, 3], [1, 4]])}


def test_metric_accumulator_gives_evaluate_sequences_numbers():
    # Different lengths (one frame, long ones), longer predictions, a flattened and a torch
    # sequence, sequences with and without closures: the frame-pooled metrics must weigh
    # sequences by frames, FDD by sequences, lip closure by closures.
    preds, gts, templates = random_set(seed=11, lengths=(7, 40, 1, 12, 25), extra=(0, 2, 1, 0, 3))
    preds[3] = preds[3].reshape(len(preds[3]), -1)
    gts[4] = torch.from_numpy(gts[4])
    closures = [np.array([0, 3, 6]), np.array([], dtype=int), np.array([0]), np.array([2, 5, 9, 11]),
                np.array([], dtype=int)]
    expected = evaluate_sequences(preds, gts, templates, ACCUMULATOR_REGIONS, closures)
    accumulator = accumulated(preds, gts, templates, ACCUMULATOR_REGIONS, closures)
    result = accumulator.result()
    assert list(result) == list(expected) == ["LVE", "EVE", "FDD", "FDD_abs", "MVE", "MOD", "lip_closure"]
    assert result == pytest.approx(expected, rel=1e-12, abs=0)
    assert 0 < result["lip_closure"] < 1 and all(type(v) is float for v in result.values())
    assert accumulator.sequences == 5 and accumulator.frames == 85 and accumulator.closures == 8
    # add() returns the sequence's own metrics.
    own = MetricAccumulator(ACCUMULATOR_REGIONS).add(preds[0], gts[0], templates[0], closures[0])
    assert own == evaluate_sequences([preds[0]], [gts[0]], [templates[0]], ACCUMULATOR_REGIONS, [closures[0]])


def test_metric_accumulator_without_closures_or_templates():
    preds, gts, templates = random_set(seed=12, lengths=(9, 4, 17))
    empty = [np.array([], dtype=int)] * 3
    for closures in (None, empty):
        result = accumulated(preds, gts, templates, ACCUMULATOR_REGIONS, closures).result()
        assert "lip_closure" not in result
        assert result == pytest.approx(evaluate_sequences(preds, gts, templates, ACCUMULATOR_REGIONS, closures),
                                       rel=1e-12, abs=0)
    without = accumulated(preds, gts, None, ACCUMULATOR_REGIONS).result()
    assert list(without) == ["LVE", "EVE", "MVE", "MOD"]
    assert without == pytest.approx(evaluate_sequences(preds, gts, None, ACCUMULATOR_REGIONS), rel=1e-12, abs=0)
    assert list(accumulated(preds, gts, templates, {}).result()) == ["MVE"]


def test_metric_accumulator_errors_are_one_sentence():
    preds, gts, templates = random_set(seed=13)
    accumulator = MetricAccumulator(ACCUMULATOR_REGIONS)
    with pytest.raises(VoxmeshError, match="No sequence was added"):
        accumulator.result()
    accumulator.add(preds[0], gts[0], templates[0])
    with pytest.raises(VoxmeshError, match="with a template and some without"):
        accumulator.add(preds[1], gts[1], None)
    with pytest.raises(VoxmeshError, match="takes one sequence"):
        accumulator.add(preds, gts, templates[0])
    with pytest.raises(VoxmeshError, match="frames"):
        accumulator.add(preds[1][:2], gts[1], templates[1])
    assert accumulator.sequences == 1  # a refused sequence adds nothing

# ---- input errors ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: lip_vertex_error([PRED, PRED], [GT], [0]), "2 predictions but 1"),
        (lambda: lip_vertex_error(PRED[:, :2], GT, [0]), "2 vertices but its ground truth has 3"),
        (lambda: lip_vertex_error(PRED, GT, [0, 3]), "mesh has 3 vertices"),
        (lambda: lip_vertex_error(PRED, GT, []), "empty"),
        (lambda: lip_vertex_error(PRED, GT, [0.5]), "integer"),
        (lambda: lip_vertex_error(PRED.reshape(2, 9), GT[:, :2], [0]), r"\(2, 9\)"),
        (lambda: lip_vertex_error([], [], [0]), "empty"),
        (lambda: lip_vertex_error(PRED[:0], GT[:0], [0]), "no frames"),
        (lambda: mouth_open_difference(PRED, GT, [0, 1]), r"\[P, 2\]"),
        (lambda: upper_face_dynamics_deviation(PRED, GT, np.zeros((4, 3)), [0]), "template has 4"),
        (lambda: upper_face_dynamics_deviation([PRED, PRED], [GT, GT], [np.zeros((3, 3))], [0]), "1 templates"),
        (lambda: diversity(PRED), r"\[S, T, V, 3\]"),
        (lambda: diversity(PRED[None]), "1 sample"),
    ],
)
def test_bad_inputs_raise_one_sentence(call, message):
    with pytest.raises(VoxmeshError, match=message):
        call()


def test_results_are_plain_floats():
    value = lip_vertex_error(torch.from_numpy(PRED), torch.from_numpy(GT), torch.tensor([0, 1]))
    assert type(value) is float and math.isfinite(value)


# ---- lip closure -------------------------------------------------------------------------

def lips_at(openings_mm, pairs=((0, 1), (2, 3))):
    """Frames of 4 vertices whose two inner-lip pairs are ``opening`` mm apart along y."""
    frames = np.zeros((len(openings_mm), 4, 3))
    for t, opening in enumerate(openings_mm):
        for upper, lower in pairs:
            frames[t, upper] = [upper, 0.0, 0.0]
            frames[t, lower] = [upper, -opening / 1000.0, 0.0]
    return frames


def test_bilabial_closure_frames_are_the_midpoints_of_p_b_m():
    from voxmesh.data.layout import Phoneme
    from voxmesh.eval.metrics import bilabial_closure_frames

    # 30 fps: /b/ 0.10-0.22 s -> 0.16 s -> frame 4.8 -> 5; /'m/ 0.50-0.58 s -> 16.2 -> 16 (the stress mark
    # is ignored); /p/ past the end is clipped to the last frame; /a/ and /f/ are not bilabial.
    manifest_rows = [["_", 0.0, 0.1], ["b", 0.1, 0.22], ["a", 0.22, 0.5], ["'m", 0.5, 0.58], ["f", 0.58, 0.7],
                     ["p", 2.0, 2.2]]
    frames = bilabial_closure_frames(manifest_rows, fps=30.0, num_frames=40)
    assert frames.tolist() == [5, 16, 39] and frames.dtype == np.int64
    objects = [Phoneme(symbol, start, end) for symbol, start, end in manifest_rows]
    assert bilabial_closure_frames(objects, 30.0, 40).tolist() == [5, 16, 39]
    assert bilabial_closure_frames(None, 30.0, 40).size == 0
    assert bilabial_closure_frames(manifest_rows, 30.0, 40, symbols=("f",)).tolist() == [19]


def test_lip_closure_accuracy_counts_closures_within_a_millimetre_of_the_ground_truth():
    from voxmesh.eval.metrics import lip_closure_accuracy

    pairs = np.array([[0, 1], [2, 3]])
    gt = lips_at([8.0, 0.0, 9.0, 0.5, 7.0])          # closed (0 mm, 0.5 mm) at frames 1 and 3
    pred = lips_at([8.0, 0.9, 9.0, 2.0, 0.0])        # 0.9 mm open: within 1 mm; 2.0 mm: 1.5 mm too open
    assert lip_closure_accuracy(pred, gt, pairs, [np.array([1, 3])]) == pytest.approx(0.5)
    assert lip_closure_accuracy(pred, gt, pairs, [[1, 3]], tolerance=2e-3) == 1.0
    assert lip_closure_accuracy(pred, gt, pairs, [[1]], tolerance=0.5e-3) == 0.0
    assert lip_closure_accuracy(gt, gt, pairs, [[1, 3]], tolerance=0.0) == 1.0   # the ground truth itself passes
    # Closures pool over sequences (3 of 4 here), a sequence without closures adds nothing, and only the
    # inner-lip distance counts: a shift of the whole mouth changes nothing.
    shifted = pred + np.array([0.0, 0.01, 0.0])
    assert lip_closure_accuracy([pred, gt, gt], [gt, gt, gt], pairs, [[1, 3], [1, 3], []]) == pytest.approx(0.75)
    assert lip_closure_accuracy(shifted, gt, pairs, [[1, 3]]) == pytest.approx(0.5)
    # evaluate_sequences adds it when closures are given, in the units table as a share
    regions = {"inner_lip_pairs": pairs}
    with_closures = evaluate_sequences([pred], [gt], None, regions, closures=[np.array([1, 3])])
    assert with_closures["lip_closure"] == pytest.approx(0.5) and METRIC_UNITS["lip_closure"] == "share"
    assert "lip_closure" not in evaluate_sequences([pred], [gt], None, regions, closures=[np.array([], dtype=int)])
    assert "lip_closure" not in evaluate_sequences([pred], [gt], None, regions)
    with pytest.raises(VoxmeshError, match="No sequence has a bilabial closure"):
        lip_closure_accuracy(pred, gt, pairs, [[]])
    with pytest.raises(VoxmeshError, match="span 1..5 but it has 5 frames"):
        lip_closure_accuracy(pred, gt, pairs, [[1, 5]])
    with pytest.raises(VoxmeshError, match="2 sequences but 1"):
        lip_closure_accuracy(pred, gt, pairs, [[1], [1]])


# ---- articulation: vowel contrast, lip rounding, blinks -----------------------------------

def corners_at(widths_mm):
    """Frames of 2 vertices, the lip corners, ``width`` mm apart along x."""
    frames = np.zeros((len(widths_mm), 2, 3))
    frames[:, 1, 0] = np.asarray(widths_mm) / 1000.0
    return frames


def lids_at(openings_mm):
    """Frames of 4 vertices: two eyelid pairs, both ``opening`` mm apart along y."""
    return lips_at(openings_mm)


def test_articulation_frames_are_the_midpoints_of_each_class():
    from voxmesh.eval.metrics import articulation_frames, phoneme_midpoint_frames

    # 30 fps: /b/ 0.1-0.22 -> frame 4.8 -> 5; /aa/ 0.2-0.4 -> 9; /u:/ 0.4-0.6 -> 15;
    # /'i:/ 0.6-0.8 -> 21 (stress ignored); /aI/ is a diphthong and /E/ a mid vowel: in no class.
    rows = [["b", 0.1, 0.22], ["aa", 0.2, 0.4], ["u:", 0.4, 0.6], ["'i:", 0.6, 0.8], ["aI", 0.8, 1.0], ["E", 1.0, 1.1]]
    frames = articulation_frames(rows, 30.0, 40)
    assert {k: v.tolist() for k, v in frames.items()} == {"bilabial": [5], "open_vowel": [9], "rounded_vowel": [15],
                                                          "spread_vowel": [21]}
    assert all(v.size == 0 for v in articulation_frames(None, 30.0, 40).values())
    # ARPAbet, as a forced aligner writes it
    arpabet = [["M", 0.0, 0.1], ["AE", 0.1, 0.3], ["UW", 0.3, 0.5], ["IY", 0.5, 0.7]]
    assert {k: v.tolist() for k, v in articulation_frames(arpabet, 10.0, 10).items()} == {
        "bilabial": [0], "open_vowel": [2], "rounded_vowel": [4], "spread_vowel": [6]}
    assert phoneme_midpoint_frames(rows, 30.0, 40, ("E",)).tolist() == [32]


def test_vowel_classes_are_the_monophthongs_of_the_synthetic_table():
    from voxmesh.data.synthetic.phonemes import PHONEME_TABLE
    from voxmesh.eval.metrics import OPEN_VOWEL_PHONEMES, ROUNDED_VOWEL_PHONEMES, SPREAD_VOWEL_PHONEMES

    def espeak(viseme):
        return {s for s, info in PHONEME_TABLE.items() if info.is_vowel and info.viseme == info.viseme_end == viseme}

    arpabet = {s for s in OPEN_VOWEL_PHONEMES + ROUNDED_VOWEL_PHONEMES + SPREAD_VOWEL_PHONEMES
               if s.isupper() and s.isalpha() and len(s) == 2}
    assert set(OPEN_VOWEL_PHONEMES) - arpabet == espeak("open_vowel")
    assert set(ROUNDED_VOWEL_PHONEMES) - arpabet == espeak("rounded_vowel")
    assert set(SPREAD_VOWEL_PHONEMES) - arpabet == espeak("close_vowel")
    assert arpabet == {"AA", "AE", "UW", "UH", "AO", "OW", "IY", "IH"}


def test_vowel_contrast_is_open_vowel_over_bilabial_opening_floored_at_a_millimetre():
    from voxmesh.eval.metrics import vowel_contrast

    pairs = np.array([[0, 1], [2, 3]])
    motion = lips_at([0.0, 12.0, 0.5, 8.0, 20.0])
    # open vowels at 1 and 3: (12 + 8) / 2 = 10 mm; bilabials at 0 and 2: 0.25 mm, floored to 1 mm -> 10
    assert vowel_contrast(motion, pairs, [[1, 3]], [[0, 2]]) == pytest.approx(10.0)
    # above the floor the plain ratio: 12 mm over 8 mm
    assert vowel_contrast(motion, pairs, [[1]], [[3]]) == pytest.approx(1.5)
    # pooled over sequences: open (12 + 8 + 20) / 3 = 40/3 mm; bilabial (8 + 2) / 2 = 5 mm -> 8/3;
    # a sequence without bilabials still adds its open vowels
    other = lips_at([2.0, 20.0])
    assert vowel_contrast([motion, other, motion], pairs, [[1, 3], [1], []], [[3], [0], []]) == pytest.approx(
        (40.0 / 3.0) / 5.0)
    # a mouth that never moves has no contrast; one that never opens scores 0
    assert vowel_contrast(lips_at([4.0] * 5), pairs, [[1, 3]], [[0, 2]]) == pytest.approx(1.0)
    assert vowel_contrast(lips_at([0.0] * 5), pairs, [[1, 3]], [[0, 2]]) == 0.0
    with pytest.raises(VoxmeshError, match="both an open vowel and a bilabial"):
        vowel_contrast(motion, pairs, [[1]], [[]])
    with pytest.raises(VoxmeshError, match="span 1..5 but it has 5 frames"):
        vowel_contrast(motion, pairs, [[1, 5]], [[0]])
    with pytest.raises(VoxmeshError, match="2 sequences but bilabial frames for 1"):
        vowel_contrast([motion, motion], pairs, [[1], [1]], [[0]])


def test_lip_rounding_is_rounded_over_spread_mouth_width():
    from voxmesh.eval.metrics import lip_rounding

    corners = np.array([[0, 1]])
    motion = corners_at([50.0, 40.0, 30.0, 45.0])
    # rounded at 2 (30 mm), spread at 0 and 3 ((50 + 45) / 2 = 47.5 mm) -> 30 / 47.5 (both over the
    # clip's median width 42.5 mm, which cancels within a clip)
    assert lip_rounding(motion, corners, [[2]], [[0, 3]]) == pytest.approx(30.0 / 47.5)
    # pooled: rounded (30 + 40) / 2 = 35 mm over spread 50 mm; a still mouth gives 1
    assert lip_rounding([motion, motion], corners, [[2], [1]], [[0], []]) == pytest.approx(0.7)
    assert lip_rounding(corners_at([48.0] * 4), corners, [[2]], [[0]]) == pytest.approx(1.0)
    # widths are relative to each clip's median: two still mouths of different sizes give 1, not 40/60
    assert lip_rounding([corners_at([40.0] * 3), corners_at([60.0] * 3)], corners, [[1], []], [[], [1]]) == 1.0
    # a wide clip (median 60 mm) rounding to 45 mm, a narrow one (median 40) spreading to 44:
    # (45/60) / (44/40) = 0.75 / 1.1
    assert lip_rounding([corners_at([60.0, 45.0, 60.0]), corners_at([40.0, 44.0, 40.0])], corners,
                        [[1], []], [[], [1]]) == pytest.approx(0.75 / 1.1)
    # flattened [T, V*3] arrays read the same
    assert lip_rounding(motion.reshape(4, 6), corners, [[2]], [[0, 3]]) == pytest.approx(30.0 / 47.5)
    with pytest.raises(VoxmeshError, match="both a rounded vowel and a spread vowel"):
        lip_rounding(motion, corners, [[2]], [[]])


def test_blinks_are_runs_below_half_the_median_lid_opening():
    from voxmesh.eval.metrics import blink_intervals, blink_statistics

    pairs = np.array([[0, 1], [2, 3]])
    # median of these 14 openings is 6 mm, the threshold 3 mm: frames 3-5 (3 frames) and 11-12 (2)
    # are blinks; frame 8 (1 frame, under the 2 frames that 0.05 s takes at 30 fps) is not.
    lids = lids_at([6, 6, 6, 2, 0, 2, 6, 6, 1, 6, 6, 0, 0, 6])
    assert blink_intervals(lids, pairs, 30.0).tolist() == [[3, 6], [11, 13]]
    stats = blink_statistics(lids, pairs, 30.0)
    assert stats["blink_rate"] == pytest.approx(2 / (14 / 30) * 60)          # 2 blinks in 14/30 s
    assert stats["blink_duration"] == pytest.approx((3 + 2) / 2 / 30)         # mean 2.5 frames
    # at 10 fps one frame is 0.1 s, so the one-frame dip counts too; fraction and length are parameters
    assert blink_intervals(lids, pairs, 10.0).tolist() == [[3, 6], [8, 9], [11, 13]]
    assert blink_intervals(lids, pairs, 30.0, fraction=0.2).tolist() == [[11, 13]]   # below 1.2 mm: 4, 8, 11-12
    assert blink_intervals(lids, pairs, 30.0, min_seconds=0.1).tolist() == [[3, 6]]
    # pooled over sequences: 2 + 0 blinks in (14 + 10) / 30 s; eyes that never close: rate 0, no duration
    still = lids_at([6] * 10)
    pooled = blink_statistics([lids, still], pairs, 30.0)
    assert pooled["blink_rate"] == pytest.approx(2 / (24 / 30) * 60)
    assert pooled["blink_duration"] == pytest.approx(2.5 / 30)
    assert blink_statistics(still, pairs, 30.0) == {"blink_rate": 0.0}
    with pytest.raises(VoxmeshError, match="positive frame rate"):
        blink_statistics(lids, pairs, 0.0)
    with pytest.raises(VoxmeshError, match="fraction"):
        blink_intervals(lids, pairs, 30.0, fraction=1.5)


ARTICULATION_REGIONS = {"inner_lip_pairs": np.array([[0, 1], [2, 3]]), "lip_corners": np.array([[4, 5]]),
                        "eyelid_pairs": np.array([[6, 7]])}


def face_at(openings_mm, widths_mm, lids_mm):
    """Frames of 8 vertices: two inner-lip pairs, the lip corners and one eyelid pair."""
    frames = np.zeros((len(openings_mm), 8, 3))
    frames[:, :4] = lips_at(openings_mm)
    frames[:, 4:6] = corners_at(widths_mm)
    frames[:, 7, 1] = -np.asarray(lids_mm) / 1000.0
    return frames


def test_evaluate_sequences_and_the_accumulator_add_the_articulation_measures():
    gt = face_at([0, 12, 0, 8, 0, 0], [50, 48, 36, 50, 50, 50], [6, 6, 0, 0, 6, 6])
    pred = face_at([2, 6, 2, 4, 0, 0, 9], [50, 50, 50, 50, 50, 50, 1], [6] * 7)  # one frame longer: cut
    frames = {"bilabial": np.array([0, 2]), "open_vowel": np.array([1, 3]), "rounded_vowel": np.array([2]),
              "spread_vowel": np.array([1])}
    result = evaluate_sequences([pred], [gt], None, ARTICULATION_REGIONS, [frames["bilabial"]], [frames], fps=30.0)
    assert list(result)[-4:] == ["lip_closure", "vowel_contrast", "lip_rounding", "blink_rate"]
    # open (6 + 4) / 2 = 5 mm over bilabial 2 mm; widths 50/50; no blink in 0.2 s
    assert result["vowel_contrast"] == pytest.approx(2.5) and result["lip_rounding"] == pytest.approx(1.0)
    assert result["blink_rate"] == 0.0 and "blink_duration" not in result
    truth = evaluate_sequences([gt], [gt], None, ARTICULATION_REGIONS, None, [frames], fps=30.0)
    # open 10 mm over the 1 mm floor; 36 / 48 mm; one 2-frame blink in 6 frames at 30 fps
    assert truth["vowel_contrast"] == pytest.approx(10.0) and truth["lip_rounding"] == pytest.approx(0.75)
    assert truth["blink_rate"] == pytest.approx(300.0) and truth["blink_duration"] == pytest.approx(2 / 30)
    assert {METRIC_UNITS[k] for k in ("vowel_contrast", "lip_rounding", "blink_rate", "blink_duration")} == {
        "ratio", "1/min", "s"}
    # without phoneme frames or fps nothing new is computed
    assert "vowel_contrast" not in evaluate_sequences([pred], [gt], None, ARTICULATION_REGIONS)
    assert "blink_rate" not in evaluate_sequences([pred], [gt], None, ARTICULATION_REGIONS, None, [frames])
    # the accumulator pools the sums, not the per-sequence ratios
    other_gt = face_at([0, 20, 4], [40, 40, 40], [6, 6, 6])
    other_frames = {"bilabial": np.array([2]), "open_vowel": np.array([1]), "rounded_vowel": np.array([], dtype=int),
                    "spread_vowel": np.array([0])}
    accumulator = MetricAccumulator(ARTICULATION_REGIONS, fps=30.0)
    accumulator.add(gt, gt, None, frames["bilabial"], frames)
    accumulator.add(other_gt, other_gt, None, other_frames["bilabial"], other_frames)
    pooled = accumulator.result()
    whole = evaluate_sequences([gt, other_gt], [gt, other_gt], None, ARTICULATION_REGIONS,
                               [frames["bilabial"], other_frames["bilabial"]], [frames, other_frames], fps=30.0)
    assert pooled == pytest.approx(whole, rel=1e-12, abs=0)
    # open (12 + 8 + 20) / 3 mm over bilabial (0 + 0 + 4) / 3 mm; widths over each clip's median (50, 40 mm):
    # rounded 36/50 over spread (48/50 + 40/40) / 2; one blink in 9 frames
    assert pooled["vowel_contrast"] == pytest.approx(10.0)
    assert pooled["lip_rounding"] == pytest.approx(0.72 / 0.98)
    assert pooled["blink_rate"] == pytest.approx(200.0) and pooled["blink_duration"] == pytest.approx(2 / 30)

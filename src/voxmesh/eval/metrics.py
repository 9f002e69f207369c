"""The metric suite of speech-driven 3D facial animation, computed as the field's
community evaluation scripts (FaceFormer, CodeTalker, FaceDiffuser) compute them, so
that numbers compare with papers.

Every metric takes one sequence ``[T, V, 3]`` (or ``[T, V*3]``, the vertices_npy layout)
or a list of them, as numpy arrays or torch tensors of any float dtype. Frames are
pooled across sequences (a long sequence weighs more than a short one), as the
community scripts concatenate every test frame before averaging; only FDD and
diversity average per sequence / per input, as theirs do. A prediction longer than its
ground truth is cut to the ground truth's length (models often emit a frame or two
extra); a shorter one is an error.

Arithmetic is float64, done a chunk of frames at a time so that scoring a whole test
set never holds a float64 copy of it (the inputs themselves stay in their own dtype).
:class:`MetricAccumulator` gives the same numbers a sequence at a time, for test sets
that do not fit in memory at all.

Units: vertex positions are in metres on VOCASET/BIWI/FLAME data, so LVE, EVE and FDD
are squared metres (the papers' "x1e-5 mm" / "x1e-7 mm" columns are these numbers
scaled), and MVE, MOD and diversity are metres; lip-closure accuracy (voxmesh's own, for
data with phoneme timings) is a share in [0, 1]; see :data:`METRIC_UNITS`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Union

import numpy as np
import torch

from voxmesh.errors import VoxmeshError

ArrayLike = Union[np.ndarray, torch.Tensor]
Sequences = Union[ArrayLike, Sequence[ArrayLike]]

METRIC_UNITS: dict[str, str] = {
    "LVE": "m^2",
    "EVE": "m^2",
    "FDD": "m^2",
    "FDD_abs": "m^2",
    "MVE": "m",
    "MOD": "m",
    "diversity": "m",
    "lip_closure": "share",
}
"""Unit of each metric key: squared metres for the squared-distance metrics, metres
for the plain distances, a share in [0, 1] for lip-closure accuracy."""

BILABIAL_PHONEMES: tuple[str, ...] = ("p", "b", "m")
"""Phoneme symbols whose midpoint must show closed lips (lip-closure accuracy)."""

LIP_CLOSURE_TOLERANCE = 1.0e-3
"""Metres a prediction's inner-lip distance may exceed the ground truth's at a closure."""

# Bytes of one float64 working chunk. A metric holds a few such arrays at once, so its
# extra memory stays within some tens of MB whatever the length of the test set.
_CHUNK_BYTES = 8 * 2**20


# ---- input handling ----------------------------------------------------------------

def _is_array(x: object) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor))


def _as_sequence_list(x: Sequences, what: str) -> list[ArrayLike]:
    """One sequence, a stack ``[N, T, V, 3]`` or a list/tuple -> a list of arrays."""
    if _is_array(x):
        if x.ndim == 4:  # a stack of equal-length sequences
            return [x[i] for i in range(x.shape[0])]
        return [x]
    if isinstance(x, (list, tuple)):
        if not x:
            raise VoxmeshError(f"The {what} list is empty; pass at least one [T, V, 3] sequence.")
        for i, item in enumerate(x):
            if not _is_array(item):
                raise VoxmeshError(
                    f"{what.capitalize()} {i} is a {type(item).__name__}; pass numpy arrays or torch tensors."
                )
        return list(x)
    raise VoxmeshError(
        f"The {what} is a {type(x).__name__}; pass a [T, V, 3] numpy array or torch tensor, or a list of them."
    )


def _as_frames(x: ArrayLike, what: str, num_vertices: int | None = None) -> ArrayLike:
    """A view ``[T, V, 3]`` of a sequence given as ``[T, V, 3]`` or ``[T, V*3]``."""
    if x.ndim == 2:
        if x.shape[1] % 3 != 0 or (num_vertices is not None and x.shape[1] != num_vertices * 3):
            expected = f"{num_vertices * 3}" if num_vertices is not None else "a multiple of 3"
            raise VoxmeshError(
                f"{what} has shape {tuple(x.shape)}, whose second axis should be {expected} (V*3); "
                f"pass [T, V, 3] or [T, V*3]."
            )
        return x.reshape(x.shape[0], x.shape[1] // 3, 3)
    if x.ndim != 3 or x.shape[2] != 3:
        raise VoxmeshError(f"{what} has shape {tuple(x.shape)}; pass [T, V, 3] or [T, V*3].")
    return x


def _num_vertices(x: ArrayLike) -> int | None:
    """V of a ``[T, V, 3]`` array, None when it is flattened (and so taken from elsewhere)."""
    return int(x.shape[1]) if x.ndim == 3 else None


def _paired(pred: Sequences, gt: Sequences, num_vertices: int | None = None) -> list[tuple[ArrayLike, ArrayLike]]:
    """Matching ``([T, V, 3], [T, V, 3])`` views, predictions cut to their ground truth's length."""
    preds = _as_sequence_list(pred, "prediction")
    gts = _as_sequence_list(gt, "ground truth")
    if len(preds) != len(gts):
        raise VoxmeshError(
            f"Got {len(preds)} predictions but {len(gts)} ground-truth sequences; pass one prediction a sequence."
        )
    pairs = []
    for i, (p, g) in enumerate(zip(preds, gts)):
        # A flattened array takes V from its partner or the template.
        v = _num_vertices(g) or _num_vertices(p) or num_vertices
        g3 = _as_frames(g, f"Ground truth {i}", v)
        p3 = _as_frames(p, f"Prediction {i}", g3.shape[1])
        if num_vertices is not None and g3.shape[1] != num_vertices:
            raise VoxmeshError(
                f"Ground truth {i} has {g3.shape[1]} vertices but the template has {num_vertices}; "
                f"pass the template of the same topology."
            )
        if p3.shape[1] != g3.shape[1]:
            raise VoxmeshError(
                f"Prediction {i} has {p3.shape[1]} vertices but its ground truth has {g3.shape[1]}; "
                f"predict on the dataset's topology."
            )
        if p3.shape[0] < g3.shape[0]:
            raise VoxmeshError(
                f"Prediction {i} has {p3.shape[0]} frames but its ground truth has {g3.shape[0]}; "
                f"predict at least as many frames as the ground truth at the same frame rate."
            )
        pairs.append((p3[: g3.shape[0]], g3))
    if sum(int(g.shape[0]) for _, g in pairs) == 0:
        raise VoxmeshError("The ground truth holds no frames; pass sequences with at least one frame.")
    return pairs


def _vertex_indices(indices: object, num_vertices: int, what: str) -> np.ndarray:
    """int64 ``[N]`` indices, checked against V."""
    idx = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
    if idx.size == 0:
        raise VoxmeshError(f"The {what} index list is empty; pass the region's vertex indices.")
    if not np.issubdtype(idx.dtype, np.integer):
        raise VoxmeshError(f"The {what} indices have dtype {idx.dtype}; pass integer vertex indices.")
    idx = idx.astype(np.int64, copy=False)
    if idx.min() < 0 or idx.max() >= num_vertices:
        raise VoxmeshError(
            f"The {what} indices span {idx.min()}..{idx.max()} but the mesh has {num_vertices} vertices; "
            f"pass indices of this topology."
        )
    return idx


def _frame_chunks(num_frames: int, values_per_frame: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` frame ranges whose float64 working arrays stay near _CHUNK_BYTES."""
    step = max(1, _CHUNK_BYTES // (8 * max(1, values_per_frame)))
    for start in range(0, num_frames, step):
        yield start, min(start + step, num_frames)


def _float64(x: ArrayLike, start: int, stop: int, idx: np.ndarray | None = None) -> np.ndarray:
    """Frames ``start:stop`` (and vertices ``idx``) of a sequence as a float64 numpy array.

    Indexing happens before the cast, so only the region is converted. The result may
    share memory with a float64 input: callers must not write into it."""
    part = x[start:stop]
    if isinstance(part, torch.Tensor):
        if idx is not None:
            part = part[:, torch.as_tensor(idx, device=part.device)]
        return part.detach().to(device="cpu", dtype=torch.float64).numpy()
    if idx is not None:
        part = part[:, idx]
    return np.asarray(part, dtype=np.float64)


def _as_template(template: ArrayLike, what: str) -> np.ndarray:
    """float64 ``[V, 3]`` from ``[V, 3]``, ``[V*3]`` or ``[1, V*3]``."""
    t = template.detach().cpu().numpy() if isinstance(template, torch.Tensor) else np.asarray(template)
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2 and t.shape[0] == 1 and t.shape[1] % 3 == 0:
        t = t[0]
    if t.ndim == 1 and t.shape[0] % 3 == 0:
        t = t.reshape(-1, 3)
    if t.ndim != 2 or t.shape[1] != 3:
        raise VoxmeshError(f"The {what} has shape {t.shape}; pass one neutral face [V, 3].")
    return t.astype(np.float64)


# ---- vertex errors -------------------------------------------------------------------

def _region_max_error(pred: Sequences, gt: Sequences, indices: object, what: str) -> float:
    """Mean over pooled frames of the largest squared L2 error over the region."""
    total, frames = 0.0, 0
    for p, g in _paired(pred, gt):
        idx = _vertex_indices(indices, int(g.shape[1]), what)
        for start, stop in _frame_chunks(int(g.shape[0]), 3 * len(idx)):
            diff = _float64(p, start, stop, idx) - _float64(g, start, stop, idx)  # [c, N, 3]
            np.square(diff, out=diff)
            total += float(diff.sum(axis=2).max(axis=1).sum())
            frames += stop - start
    return total / frames


def lip_vertex_error(pred: Sequences, gt: Sequences, lip_indices: object) -> float:
    """Lip vertex error (LVE): per frame the largest squared L2 distance over the lip
    vertices, averaged over every frame of every sequence (frames pooled).

    pred, gt: ``[T, V, 3]`` / ``[T, V*3]`` or lists of them (pred may be longer);
    lip_indices: int ``[N]``. Returns squared metres for data in metres."""
    return _region_max_error(pred, gt, lip_indices, "lip")


def emotional_vertex_error(pred: Sequences, gt: Sequences, indices: object) -> float:
    """Emotional vertex error (EVE): LVE's computation over the eye and forehead
    vertices (pass their union as ``indices``, int ``[N]``)."""
    return _region_max_error(pred, gt, indices, "eye and forehead")


def mean_vertex_error(pred: Sequences, gt: Sequences) -> float:
    """Mean vertex error (MVE): the L2 (not squared) distance averaged over every
    vertex of every pooled frame. pred, gt: ``[T, V, 3]`` / ``[T, V*3]`` or lists."""
    total, count = 0.0, 0
    for p, g in _paired(pred, gt):
        num_vertices = int(g.shape[1])
        for start, stop in _frame_chunks(int(g.shape[0]), 3 * num_vertices):
            diff = _float64(p, start, stop) - _float64(g, start, stop)  # [c, V, 3]
            np.square(diff, out=diff)
            total += float(np.sqrt(diff.sum(axis=2)).sum())
            count += (stop - start) * num_vertices
    return total / count


# ---- dynamics --------------------------------------------------------------------------

def _mean_motion_std(x: ArrayLike, template: np.ndarray, idx: np.ndarray) -> float:
    """Mean over ``idx`` of the std over time (ddof=0) of the squared displacement
    from the template, of one sequence ``[T, V, 3]``.

    Chunks of frames are merged with Chan et al.'s pairwise update, which keeps the
    two-pass accuracy of ``np.std`` without holding every frame at once."""
    region_template = template[idx]
    count = 0
    mean = np.zeros(len(idx))
    m2 = np.zeros(len(idx))  # sum of squared deviations from the mean
    for start, stop in _frame_chunks(int(x.shape[0]), 3 * len(idx)):
        motion = _float64(x, start, stop, idx) - region_template  # [c, N, 3]
        np.square(motion, out=motion)
        sq = motion.sum(axis=2)  # [c, N]
        n = stop - start
        chunk_mean = sq.mean(axis=0)
        chunk_m2 = np.square(sq - chunk_mean).sum(axis=0)
        delta = chunk_mean - mean
        total = count + n
        mean += delta * (n / total)
        m2 += chunk_m2 + np.square(delta) * (count * n / total)
        count = total
    return float(np.sqrt(m2 / count).mean())


def _upper_face_deviations(pred: Sequences, gt: Sequences, template: ArrayLike | Sequence[ArrayLike],
                           indices: object) -> list[float]:
    """Per sequence, ground truth's minus prediction's mean upper-face motion std."""
    num_sequences = len(_as_sequence_list(gt, "ground truth"))
    per_sequence = (isinstance(template, (list, tuple)) and all(_is_array(t) for t in template)) or (
        _is_array(template) and template.ndim == 3 and template.shape[0] > 1)  # a stack [N, V, 3]
    if per_sequence:
        if len(template) != num_sequences:
            raise VoxmeshError(
                f"Got {len(template)} templates for {num_sequences} sequences; pass one template or one a sequence."
            )
        templates = list(template)
    else:
        templates = [template] * num_sequences
    # With one topology the template also tells V for flattened [T, V*3] arrays.
    sizes = {int(np.prod(t.shape if _is_array(t) else np.shape(t))) // 3 for t in templates}
    num_vertices = sizes.pop() if len(sizes) == 1 else None
    deviations = []
    for i, ((p, g), tpl) in enumerate(zip(_paired(pred, gt, num_vertices), templates)):
        # Converted one at a time: a float64 copy of every template would grow with the test set.
        tpl = _as_template(tpl, f"template {i}")
        if tpl.shape[0] != g.shape[1]:
            raise VoxmeshError(
                f"Template {i} has {tpl.shape[0]} vertices but sequence {i} has {g.shape[1]}; "
                f"pass the template of the sequence's subject."
            )
        idx = _vertex_indices(indices, int(g.shape[1]), "upper-face")
        deviations.append(_mean_motion_std(g, tpl, idx) - _mean_motion_std(p, tpl, idx))
    return deviations


def upper_face_dynamics_deviation(pred: Sequences, gt: Sequences, template: ArrayLike | Sequence[ArrayLike],
                                  indices: object, absolute: bool = False) -> float:
    """Upper-face dynamics deviation (FDD), as CodeTalker computes it.

    Per sequence, for ground truth and prediction separately: motion = vertices -
    template, squared displacement per frame and vertex (sum over xyz), standard
    deviation over time per vertex (ddof=0, numpy's default, which CodeTalker uses),
    mean over the upper-face vertices. FDD is the mean over sequences (not frames) of
    (ground truth - prediction): positive when the prediction moves the upper face
    less than the speaker did. ``absolute=True`` averages ``|ground truth -
    prediction|`` instead, so that errors of both signs cannot cancel.

    pred, gt: ``[T, V, 3]`` / ``[T, V*3]`` or lists; template: one ``[V, 3]`` (or
    ``[V*3]``) for all sequences, or a list of arrays / a stack ``[N, V, 3]`` with one a
    sequence; indices: int ``[N]``. Squared metres."""
    deviations = np.asarray(_upper_face_deviations(pred, gt, template, indices))
    return float(np.mean(np.abs(deviations) if absolute else deviations))


# ---- mouth opening -------------------------------------------------------------------

def _vertex_pairs(lip_pairs: object, num_vertices: int) -> np.ndarray:
    pairs = lip_pairs.detach().cpu().numpy() if isinstance(lip_pairs, torch.Tensor) else np.asarray(lip_pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise VoxmeshError(f"The lip pairs have shape {pairs.shape}; pass int [P, 2] (upper, lower) vertex pairs.")
    return _vertex_indices(pairs.reshape(-1), num_vertices, "inner-lip pair").reshape(-1, 2)


def _mouth_opening(x: ArrayLike, start: int, stop: int, pairs: np.ndarray) -> np.ndarray:
    """``[c]`` mean over pairs of the upper-to-lower lip distance in frames start:stop."""
    gap = _float64(x, start, stop, pairs[:, 0]) - _float64(x, start, stop, pairs[:, 1])  # [c, P, 3]
    np.square(gap, out=gap)
    return np.sqrt(gap.sum(axis=2)).mean(axis=1)


def mouth_opening(vertices: ArrayLike, lip_pairs: object) -> np.ndarray:
    """Mouth opening per frame, float64 ``[T]`` metres: the mean over ``lip_pairs``
    (int ``[P, 2]``, upper and lower vertex) of their distance, as MOD measures it, for
    one sequence ``[T, V, 3]`` (or ``[T, V*3]``)."""
    frames = _as_frames(vertices, "vertices")
    pairs = _vertex_pairs(lip_pairs, _num_vertices(frames))
    return _mouth_opening(frames, 0, len(frames), pairs)


def mouth_open_difference(pred: Sequences, gt: Sequences, lip_pairs: object) -> float:
    """Mouth opening difference (MOD): mouth opening per frame is the mean over the
    pairs of the L2 distance between the upper and the lower inner-lip vertex; MOD is
    the mean over pooled frames of ``|opening_pred - opening_gt|``.

    pred, gt: ``[T, V, 3]`` / ``[T, V*3]`` or lists; lip_pairs: int ``[P, 2]``. Metres."""
    total, frames = 0.0, 0
    for p, g in _paired(pred, gt):
        pairs = _vertex_pairs(lip_pairs, int(g.shape[1]))
        for start, stop in _frame_chunks(int(g.shape[0]), 6 * len(pairs)):
            opened = _mouth_opening(p, start, stop, pairs) - _mouth_opening(g, start, stop, pairs)
            total += float(np.abs(opened).sum())
            frames += stop - start
    return total / frames


# ---- lip closure ----------------------------------------------------------------------

def bilabial_closure_frames(phonemes: Sequence[object] | None, fps: float, num_frames: int,
                            symbols: Sequence[str] = BILABIAL_PHONEMES) -> np.ndarray:
    """Frame indices (int ``[K]``, ascending) of the midpoints of a sequence's bilabial
    phonemes: ``round(fps * (start + end) / 2)``, clipped to the last frame.

    phonemes: items with ``symbol``, ``start`` and ``end`` (seconds) attributes, or
    ``(symbol, start, end)`` tuples as the manifest stores them; None gives no frames.
    Stress marks (``'``, ``,``) before a symbol are ignored."""
    if fps <= 0 or num_frames < 1:
        raise VoxmeshError(f"fps {fps} and num_frames {num_frames} must be positive to place phoneme midpoints.")
    wanted = set(symbols)
    frames = []
    for item in phonemes or []:
        symbol, start, end = ((item.symbol, item.start, item.end) if hasattr(item, "symbol") else tuple(item)[:3])
        if str(symbol).lstrip("',%=") in wanted:
            frames.append(min(int(round(0.5 * (float(start) + float(end)) * fps)), num_frames - 1))
    return np.asarray(sorted(frames), dtype=np.int64)


def lip_closure_accuracy(pred: Sequences, gt: Sequences, lip_pairs: object, closure_frames: Sequence[object],
                         tolerance: float = LIP_CLOSURE_TOLERANCE) -> float:
    """Lip-closure accuracy: the share of bilabial closures (/p/, /b/, /m/ midpoints, see
    :func:`bilabial_closure_frames`) at which the prediction's lips are closed.

    At each closure frame the inner-lip distance (the mean over ``lip_pairs`` of the
    upper-to-lower vertex distance, as MOD measures mouth opening) of the prediction must
    be at most the ground truth's distance at that frame (its closed-lip distance) plus
    ``tolerance`` metres. Closures are pooled over all sequences. A face that never opens
    passes every closure, so read it beside MOD and LVE.

    pred, gt: ``[T, V, 3]`` / ``[T, V*3]`` or lists; lip_pairs: int ``[P, 2]``;
    closure_frames: one int array of frame indices a sequence. A share in [0, 1]."""
    pairs_list = _paired(pred, gt)
    if len(closure_frames) != len(pairs_list):
        raise VoxmeshError(
            f"Got closure frames for {len(closure_frames)} sequences but {len(pairs_list)} sequences; pass one list a sequence."
        )
    if tolerance < 0:
        raise VoxmeshError(f"The lip-closure tolerance is {tolerance} m; pass a distance of 0 or more.")
    closed, total = 0, 0
    for i, ((p, g), frames) in enumerate(zip(pairs_list, closure_frames)):
        idx = np.asarray(frames, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            continue
        if idx.min() < 0 or idx.max() >= g.shape[0]:
            raise VoxmeshError(
                f"Closure frames of sequence {i} span {idx.min()}..{idx.max()} but it has {g.shape[0]} frames; "
                "pass frame indices of that sequence."
            )
        pairs = _vertex_pairs(lip_pairs, int(g.shape[1]))
        opened = np.array([_mouth_opening(p, k, k + 1, pairs)[0] - _mouth_opening(g, k, k + 1, pairs)[0] for k in idx])
        closed += int(np.count_nonzero(opened <= tolerance))
        total += int(idx.size)
    if total == 0:
        raise VoxmeshError("No sequence has a bilabial closure (/p/, /b/, /m/ with timings); lip-closure accuracy needs one.")
    return closed / total


# ---- diversity ---------------------------------------------------------------------------

def diversity(samples: ArrayLike | Sequence[ArrayLike]) -> float:
    """Sample diversity: for each input, the mean over all sample pairs ``i < j`` of the
    L2 distance averaged over frames and vertices; then the mean over inputs.

    samples: ``[S, T, V, 3]`` or ``[S, T, V*3]`` (S >= 2 samples of one input, e.g.
    different seeds or speaker conditions), or a list of such arrays, one an input.
    Metres."""
    inputs = [samples] if _is_array(samples) else samples
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise VoxmeshError("Pass diversity samples as an [S, T, V, 3] array or a non-empty list of them.")
    scores = []
    for n, stack in enumerate(inputs):
        if not _is_array(stack):
            raise VoxmeshError(f"Diversity input {n} is a {type(stack).__name__}; pass [S, T, V, 3] arrays.")
        # [S, T, 3] with a last axis of 3 is more likely [T, V, 3] passed by mistake than a one-vertex mesh.
        if stack.ndim == 3 and stack.shape[2] % 3 == 0 and stack.shape[2] != 3:
            stack = stack.reshape(stack.shape[0], stack.shape[1], stack.shape[2] // 3, 3)
        if stack.ndim != 4 or stack.shape[3] != 3:
            raise VoxmeshError(
                f"Diversity input {n} has shape {tuple(stack.shape)}; pass the samples of one input as [S, T, V, 3]."
            )
        num_samples, num_frames, num_vertices = (int(s) for s in stack.shape[:3])
        if num_samples < 2:
            raise VoxmeshError(f"Diversity input {n} has {num_samples} sample; pass at least 2 samples an input.")
        if num_frames == 0:
            raise VoxmeshError(f"Diversity input {n} has no frames; pass samples with at least one frame.")
        total = 0.0
        for start, stop in _frame_chunks(num_frames, 3 * num_vertices * num_samples):
            chunk = [_float64(stack[s], start, stop) for s in range(num_samples)]
            for i in range(num_samples):
                for j in range(i + 1, num_samples):
                    diff = chunk[i] - chunk[j]
                    np.square(diff, out=diff)
                    total += float(np.sqrt(diff.sum(axis=2)).sum())
        num_pairs = num_samples * (num_samples - 1) // 2
        scores.append(total / (num_pairs * num_frames * num_vertices))
    return float(np.mean(scores))


# ---- everything at once ----------------------------------------------------------------

def _emotion_region(regions: Mapping[str, object]) -> object | None:
    """The EVE region: an explicit eye+forehead set if given, else the union of both."""
    for name in ("eye_forehead", "emotion"):
        if name in regions:
            return regions[name]
    if "eyes" in regions and "forehead" in regions:
        eyes = np.asarray(regions["eyes"]).reshape(-1)
        forehead = np.asarray(regions["forehead"]).reshape(-1)
        return np.union1d(eyes, forehead)  # shared vertices count once
    return None


def evaluate_sequences(preds: Sequences, gts: Sequences, templates: ArrayLike | Sequence[ArrayLike] | None,
                       regions: Mapping[str, object], closures: Sequence[object] | None = None) -> dict[str, float]:
    """Every metric whose inputs exist, keyed "LVE", "EVE", "FDD", "FDD_abs", "MVE", "MOD"
    and, with ``closures``, "lip_closure".

    preds, gts: ``[T, V, 3]`` / ``[T, V*3]`` or lists; templates: one ``[V, 3]``, a list
    with one a sequence, or None (then no FDD); regions: name -> int ``[N]`` indices
    ("lips" -> LVE; "eye_forehead" or "emotion", else the union of "eyes" and
    "forehead" -> EVE; "upper_face" -> FDD) and name -> int ``[P, 2]`` pairs
    ("inner_lip_pairs" -> MOD). MVE is always computed. closures: one int array of
    bilabial closure frames a sequence (:func:`bilabial_closure_frames`); with
    "inner_lip_pairs" and at least one closure it adds lip-closure accuracy. Units:
    :data:`METRIC_UNITS`."""
    results: dict[str, float] = {}
    if "lips" in regions:
        results["LVE"] = lip_vertex_error(preds, gts, regions["lips"])
    emotion = _emotion_region(regions)
    if emotion is not None:
        results["EVE"] = emotional_vertex_error(preds, gts, emotion)
    if "upper_face" in regions and templates is not None:
        deviations = np.asarray(_upper_face_deviations(preds, gts, templates, regions["upper_face"]))
        results["FDD"] = float(deviations.mean())
        results["FDD_abs"] = float(np.abs(deviations).mean())
    results["MVE"] = mean_vertex_error(preds, gts)
    if "inner_lip_pairs" in regions:
        results["MOD"] = mouth_open_difference(preds, gts, regions["inner_lip_pairs"])
        if closures is not None and sum(np.asarray(c).size for c in closures) > 0:
            results["lip_closure"] = lip_closure_accuracy(preds, gts, regions["inner_lip_pairs"], closures)
    return results


class _Sum:
    """A running sum with Neumaier's compensation: adding thousands of per-sequence
    values one at a time stays as accurate as summing them at once, so a streamed
    mean agrees with the one over the whole list."""

    def __init__(self) -> None:
        self.total = 0.0
        self.compensation = 0.0

    def add(self, value: float) -> None:
        total = self.total + value
        if abs(self.total) >= abs(value):
            self.compensation += (self.total - total) + value
        else:
            self.compensation += (value - total) + self.total
        self.total = total

    @property
    def value(self) -> float:
        return self.total + self.compensation


# Keys in the order evaluate_sequences returns them, with the weight of one sequence's
# value in the pooled result: frames, vertex positions (frames x vertices) or sequences.
_POOLING = (("LVE", "frames"), ("EVE", "frames"), ("FDD", "sequences"), ("FDD_abs", "sequences"),
            ("MVE", "positions"), ("MOD", "frames"))


class MetricAccumulator:
    """:func:`evaluate_sequences` one sequence at a time: ``add`` each prediction with
    its ground truth, ``result()`` gives the numbers evaluate_sequences gives on the
    whole lists (same keys, same order), so a test set of any size is scored while only
    one sequence is in memory.

    Each sequence is scored by evaluate_sequences itself; what is kept is its weight in
    the pooled value: frames for LVE, EVE and MOD, frames x vertices for MVE (frame-pooled
    means), one a sequence for FDD and FDD_abs (averaged over sequences), closures for
    lip-closure accuracy (pooled over closures, present once a closure was seen).
    regions: as evaluate_sequences takes them."""

    def __init__(self, regions: Mapping[str, object]):
        self.regions = regions
        self.sequences = 0
        self.frames = 0
        self.closures = 0
        self._weights = {"frames": 0, "positions": 0, "sequences": 0}
        self._sums: dict[str, _Sum] = {}
        self._closed = 0
        self._with_template: bool | None = None

    def add(self, pred: ArrayLike, gt: ArrayLike, template: ArrayLike | None,
            closure_frames: object | None = None) -> dict[str, float]:
        """Score one sequence (pred, gt: ``[T, V, 3]`` / ``[T, V*3]``, pred may be longer;
        template ``[V, 3]`` or None for no FDD; closure_frames: int ``[K]`` bilabial
        closure frames or None) and return its own metrics."""
        if not (_is_array(pred) and _is_array(gt)):
            raise VoxmeshError("MetricAccumulator.add takes one sequence; pass a [T, V, 3] prediction and ground truth.")
        with_template = template is not None
        if self._with_template is not None and with_template != self._with_template:
            raise VoxmeshError(
                "Some sequences were added with a template and some without; pass a template with every sequence or none."
            )
        closures = None if closure_frames is None else [closure_frames]
        metrics = evaluate_sequences([pred], [gt], [template] if with_template else None, self.regions, closures)
        self._with_template = with_template
        (_, g), = _paired([pred], [gt])  # the [T, V, 3] view, for the frame and vertex counts
        frames, vertices = int(g.shape[0]), int(g.shape[1])
        weights = {"frames": frames, "positions": frames * vertices, "sequences": 1}
        for key, pooling in _POOLING:
            if key in metrics:
                self._sums.setdefault(key, _Sum()).add(metrics[key] * weights[pooling])
        for pooling, weight in weights.items():
            self._weights[pooling] += weight
        if "lip_closure" in metrics:
            count = int(np.asarray(closure_frames).size)
            self._closed += round(metrics["lip_closure"] * count)  # closed/count back to the whole count
            self.closures += count
        self.sequences += 1
        self.frames += frames
        return metrics

    def result(self) -> dict[str, float]:
        """The metrics over every sequence added, as :func:`evaluate_sequences` gives them."""
        if self.sequences == 0:
            raise VoxmeshError("No sequence was added to the metric accumulator; add at least one before its result.")
        results = {key: self._sums[key].value / self._weights[pooling] for key, pooling in _POOLING if key in self._sums}
        if self.closures:
            results["lip_closure"] = self._closed / self.closures
        return results


__all__ = [
    "BILABIAL_PHONEMES",
    "LIP_CLOSURE_TOLERANCE",
    "METRIC_UNITS",
    "MetricAccumulator",
    "bilabial_closure_frames",
    "diversity",
    "emotional_vertex_error",
    "evaluate_sequences",
    "lip_closure_accuracy",
    "mouth_opening",
    "lip_vertex_error",
    "mean_vertex_error",
    "mouth_open_difference",
    "upper_face_dynamics_deviation",
]

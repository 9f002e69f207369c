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
data with phoneme timings) is a share in [0, 1]; the articulation measures (voxmesh's own:
vowel contrast and lip rounding, ratios; blink rate per minute and blink duration in
seconds) describe one motion each and are reported for the prediction and the ground truth
side by side; see :data:`METRIC_UNITS`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Union

import math

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
    "vowel_contrast": "ratio",
    "lip_rounding": "ratio",
    "blink_rate": "1/min",
    "blink_duration": "s",
}
"""Unit of each metric key: squared metres for the squared-distance metrics, metres
for the plain distances, a share in [0, 1] for lip-closure accuracy, plain ratios for
vowel contrast and lip rounding, blinks per minute and seconds for the blinks."""

BILABIAL_PHONEMES: tuple[str, ...] = ("p", "b", "m")
"""Phoneme symbols whose midpoint must show closed lips (lip-closure accuracy)."""

# Vowel classes for the articulation measures: the monophthongs of each class in the
# synthetic data's espeak-ng table (voxmesh.data.synthetic.phonemes; a test keeps them in
# step), then the ARPAbet symbols of the same vowels as CMUdict / pocketsphinx write them
# (upper case, no stress digit), so that force-aligned real speech is scored the same way.
# Diphthongs are left out (their midpoint lies between two shapes), except espeak's "oU",
# rounded from start to end.
OPEN_VOWEL_PHONEMES: tuple[str, ...] = ("a", "aa", "A:", "A", "A@", "a2", "AA", "AE")
"""Open vowels (father, cat): the jaw's widest shapes (vowel contrast's numerator)."""

ROUNDED_VOWEL_PHONEMES: tuple[str, ...] = ("u:", "U", "O:", "O", "O2", "O@", "o@", "0", "oU",
                                           "UW", "UH", "AO", "OW")
"""Rounded vowels (goose, foot, thought, goat): narrow, protruded lips (lip rounding's numerator)."""

SPREAD_VOWEL_PHONEMES: tuple[str, ...] = ("i:", "i", "I", "I2", "I#", "IY", "IH")
"""Spread vowels (fleece, kit): the widest mouth (lip rounding's denominator)."""

ARTICULATION_CLASSES: dict[str, tuple[str, ...]] = {
    "bilabial": BILABIAL_PHONEMES + ("P", "B", "M"),  # espeak's and ARPAbet's
    "open_vowel": OPEN_VOWEL_PHONEMES,
    "rounded_vowel": ROUNDED_VOWEL_PHONEMES,
    "spread_vowel": SPREAD_VOWEL_PHONEMES,
}
"""Phoneme classes whose midpoints the articulation measures read, by name."""

LIP_CLOSURE_TOLERANCE = 1.0e-3
"""Metres a prediction's inner-lip distance may exceed the ground truth's at a closure."""

VOWEL_CONTRAST_FLOOR = LIP_CLOSURE_TOLERANCE
"""Metres below which the mean opening at bilabials counts as this value in the vowel
contrast: sealed lips (0 m) would divide by zero, and a gap within the lip-closure
tolerance is closed anyway."""

BLINK_FRACTION = 0.5
"""An eye is shut for blink counting when its opening is below this share of its clip's median."""

BLINK_MIN_SECONDS = 0.05
"""Shortest run of shut frames that counts as a blink (rounded up to whole frames: 2 at 25
or 30 fps, 3 at 60), so a one-frame flicker of a prediction is no blink."""

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


def _mean_pair_distance(x: ArrayLike, start: int, stop: int, pairs: np.ndarray) -> np.ndarray:
    """``[c]`` mean over pairs of the distance between a pair's two vertices (upper and
    lower lip, left and right corner, upper and lower lid) in frames start:stop."""
    gap = _float64(x, start, stop, pairs[:, 0]) - _float64(x, start, stop, pairs[:, 1])  # [c, P, 3]
    np.square(gap, out=gap)
    return np.sqrt(gap.sum(axis=2)).mean(axis=1)


def mouth_opening(vertices: ArrayLike, lip_pairs: object) -> np.ndarray:
    """Mouth opening per frame, float64 ``[T]`` metres: the mean over ``lip_pairs``
    (int ``[P, 2]``, upper and lower vertex) of their distance, as MOD measures it, for
    one sequence ``[T, V, 3]`` (or ``[T, V*3]``)."""
    return mean_pair_distance(vertices, lip_pairs)


def mean_pair_distance(vertices: ArrayLike, pairs: object) -> np.ndarray:
    """Per frame the mean over ``pairs`` (int ``[P, 2]``) of the distance between a pair's
    two vertices, float64 ``[T]`` metres, for one sequence ``[T, V, 3]`` (or ``[T, V*3]``):
    the mouth width from ``lip_corners``, the eyelid opening from ``eyelid_pairs``, the
    mouth opening from ``inner_lip_pairs`` (:func:`mouth_opening`)."""
    frames = _as_frames(vertices, "vertices")
    checked = _vertex_pairs(pairs, _num_vertices(frames))
    return _mean_pair_distance(frames, 0, len(frames), checked)


def mouth_open_difference(pred: Sequences, gt: Sequences, lip_pairs: object) -> float:
    """Mouth opening difference (MOD): mouth opening per frame is the mean over the
    pairs of the L2 distance between the upper and the lower inner-lip vertex; MOD is
    the mean over pooled frames of ``|opening_pred - opening_gt|``.

    pred, gt: ``[T, V, 3]`` / ``[T, V*3]`` or lists; lip_pairs: int ``[P, 2]``. Metres."""
    total, frames = 0.0, 0
    for p, g in _paired(pred, gt):
        pairs = _vertex_pairs(lip_pairs, int(g.shape[1]))
        for start, stop in _frame_chunks(int(g.shape[0]), 6 * len(pairs)):
            opened = _mean_pair_distance(p, start, stop, pairs) - _mean_pair_distance(g, start, stop, pairs)
            total += float(np.abs(opened).sum())
            frames += stop - start
    return total / frames


# ---- lip closure ----------------------------------------------------------------------

def phoneme_midpoint_frames(phonemes: Sequence[object] | None, fps: float, num_frames: int,
                            symbols: Sequence[str]) -> np.ndarray:
    """Frame indices (int ``[K]``, ascending) of the midpoints of a sequence's phonemes
    whose symbol is in ``symbols``: ``round(fps * (start + end) / 2)``, clipped to the
    last frame.

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


def bilabial_closure_frames(phonemes: Sequence[object] | None, fps: float, num_frames: int,
                            symbols: Sequence[str] = BILABIAL_PHONEMES) -> np.ndarray:
    """Frame indices (int ``[K]``, ascending) of the midpoints of a sequence's bilabial
    phonemes (/p/, /b/, /m/): :func:`phoneme_midpoint_frames` with those symbols."""
    return phoneme_midpoint_frames(phonemes, fps, num_frames, symbols)


def articulation_frames(phonemes: Sequence[object] | None, fps: float, num_frames: int) -> dict[str, np.ndarray]:
    """Midpoint frames of each class of :data:`ARTICULATION_CLASSES` in one sequence:
    ``{"bilabial": int [K1], "open_vowel": [K2], "rounded_vowel": [K3], "spread_vowel": [K4]}``
    (empty arrays without phoneme timings)."""
    return {name: phoneme_midpoint_frames(phonemes, fps, num_frames, symbols)
            for name, symbols in ARTICULATION_CLASSES.items()}


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
        opened = np.array([_mean_pair_distance(p, k, k + 1, pairs)[0] - _mean_pair_distance(g, k, k + 1, pairs)[0] for k in idx])
        closed += int(np.count_nonzero(opened <= tolerance))
        total += int(idx.size)
    if total == 0:
        raise VoxmeshError("No sequence has a bilabial closure (/p/, /b/, /m/ with timings); lip-closure accuracy needs one.")
    return closed / total


# ---- articulation -------------------------------------------------------------------------
# Measures of one motion each (a prediction or the ground truth), pooled over sequences:
# vowel contrast and lip rounding over the phoneme midpoints of every sequence, blinks over
# every second. _ArticulationTally holds the sums, so a streamed evaluation
# (MetricAccumulator) and a whole-list one give the same numbers.

def _frame_indices(frames: object, num_frames: int, what: str, sequence: int) -> np.ndarray:
    """int64 ``[K]`` frame indices of one sequence, checked against its length."""
    idx = np.asarray(frames, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= num_frames):
        raise VoxmeshError(
            f"{what.capitalize()} frames of sequence {sequence} span {idx.min()}..{idx.max()} but it has "
            f"{num_frames} frames; pass frame indices of that sequence."
        )
    return idx


def blink_intervals(vertices: ArrayLike, eyelid_pairs: object, fps: float, fraction: float = BLINK_FRACTION,
                    min_seconds: float = BLINK_MIN_SECONDS) -> np.ndarray:
    """The blinks of one sequence ``[T, V, 3]`` (or ``[T, V*3]``): int64 ``[K, 2]`` frame
    ranges ``[start, stop)``.

    The eyelid opening of a frame is the mean over ``eyelid_pairs`` (int ``[Q, 2]``, upper
    and lower lid vertex) of their distance. A blink is a run of consecutive frames whose
    opening is below ``fraction`` of the sequence's median opening, at least
    ``ceil(min_seconds * fps)`` frames long. Runs touching the first or last frame count."""
    if fps <= 0:
        raise VoxmeshError(f"fps is {fps}; pass the sequence's positive frame rate to count blinks.")
    if not 0.0 < fraction < 1.0 or min_seconds < 0:
        raise VoxmeshError(f"Blink fraction {fraction} and min_seconds {min_seconds} must lie in (0, 1) and be >= 0.")
    opening = mean_pair_distance(vertices, eyelid_pairs)
    if opening.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    shut = opening < fraction * np.median(opening)
    edges = np.diff(np.concatenate([[0], shut.astype(np.int8), [0]]))
    starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    keep = (stops - starts) >= max(1, math.ceil(min_seconds * fps - 1e-9))
    return np.stack([starts[keep], stops[keep]], axis=1).astype(np.int64)


class _ArticulationTally:
    """Sums behind vowel contrast, lip rounding and the blink measures of one motion set."""

    def __init__(self) -> None:
        self.sums = {name: 0.0 for name in ("open", "closed", "rounded", "spread", "blink_seconds", "seconds")}
        self.counts = {name: 0 for name in ("open", "closed", "rounded", "spread", "blinks")}

    def add(self, vertices: ArrayLike, regions: Mapping[str, object], frames: Mapping[str, object] | None,
            fps: float | None, sequence: int = 0) -> None:
        """Tally one sequence ``[T, V, 3]``: mouth opening at its bilabial and open-vowel
        midpoints (``inner_lip_pairs``), mouth width at rounded and spread vowels over its
        median width (``lip_corners``), blinks (``eyelid_pairs``, with ``fps``)."""
        x = _as_frames(vertices, f"Sequence {sequence}")
        num_frames = int(x.shape[0])
        frames = frames or {}
        for pair_name, classes in (("inner_lip_pairs", (("open", "open_vowel"), ("closed", "bilabial"))),
                                   ("lip_corners", (("rounded", "rounded_vowel"), ("spread", "spread_vowel")))):
            if pair_name not in regions:
                continue
            pairs = _vertex_pairs(regions[pair_name], int(x.shape[1]))
            indices = [_frame_indices(frames.get(name, ()), num_frames, name.replace("_", " "), sequence)
                       for _, name in classes]
            if not any(idx.size for idx in indices):
                continue
            distance = np.concatenate([_mean_pair_distance(x, start, stop, pairs)
                                       for start, stop in _frame_chunks(num_frames, 6 * len(pairs))])
            # Widths relative to the clip's own median: mouths of different sizes (subjects,
            # or a model that shrinks them) pool without weighing rounded against spread.
            reference = float(np.median(distance)) if pair_name == "lip_corners" else 1.0
            for (key, _), idx in zip(classes, indices):
                if idx.size and reference > 0:
                    self.sums[key] += float(distance[idx].sum()) / reference
                    self.counts[key] += int(idx.size)
        if "eyelid_pairs" in regions and fps is not None:
            blinks = blink_intervals(x, regions["eyelid_pairs"], fps)
            self.counts["blinks"] += len(blinks)
            self.sums["blink_seconds"] += float((blinks[:, 1] - blinks[:, 0]).sum()) / fps
            self.sums["seconds"] += num_frames / fps

    def merge(self, other: "_ArticulationTally") -> None:
        for key, value in other.sums.items():
            self.sums[key] += value
        for key, value in other.counts.items():
            self.counts[key] += value

    def result(self) -> dict[str, float]:
        """The measures whose inputs were seen: "vowel_contrast", "lip_rounding",
        "blink_rate", "blink_duration" (the last only once a blink was seen)."""
        mean = {k: self.sums[k] / self.counts[k] for k in ("open", "closed", "rounded", "spread") if self.counts[k]}
        out: dict[str, float] = {}
        if "open" in mean and "closed" in mean:
            out["vowel_contrast"] = mean["open"] / max(mean["closed"], VOWEL_CONTRAST_FLOOR)
        if "rounded" in mean and mean.get("spread", 0.0) > 0.0:
            out["lip_rounding"] = mean["rounded"] / mean["spread"]
        if self.sums["seconds"] > 0:
            out["blink_rate"] = 60.0 * self.counts["blinks"] / self.sums["seconds"]
            if self.counts["blinks"]:
                out["blink_duration"] = self.sums["blink_seconds"] / self.counts["blinks"]
        return out


def _tally(vertices: Sequences, regions: Mapping[str, object], frames: Sequence[Mapping[str, object]] | None,
           fps: float | None) -> _ArticulationTally:
    sequences = _as_sequence_list(vertices, "motion")
    if frames is not None and len(frames) != len(sequences):
        raise VoxmeshError(
            f"Got phoneme frames for {len(frames)} sequences but {len(sequences)} sequences; pass one set a sequence."
        )
    tally = _ArticulationTally()
    for i, x in enumerate(sequences):
        tally.add(x, regions, None if frames is None else frames[i], fps, i)
    return tally


def _class_ratio(key: str, vertices: Sequences, pair_name: str, pairs: object,
                 first: tuple[str, Sequence[object]], second: tuple[str, Sequence[object]]) -> float:
    """The articulation measure ``key`` from two phoneme classes' midpoint frames
    (``(class name, one int array a sequence)`` each)."""
    (name_a, frames_a), (name_b, frames_b) = first, second
    label_a, label_b = name_a.replace("_", " "), name_b.replace("_", " ")
    if len(frames_a) != len(frames_b):
        raise VoxmeshError(f"Got {label_a} frames for {len(frames_a)} sequences but {label_b} frames for "
                           f"{len(frames_b)}; pass one list of each a sequence.")
    frames = [{name_a: a, name_b: b} for a, b in zip(frames_a, frames_b)]
    result = _tally(vertices, {pair_name: pairs}, frames, None).result()
    if key not in result:
        article = "an" if label_a[0] in "aeiou" else "a"
        raise VoxmeshError(f"No sequence has both {article} {label_a} and a {label_b} with timings; "
                           f"{key.replace('_', ' ')} needs both.")
    return result[key]


def vowel_contrast(vertices: Sequences, lip_pairs: object, open_frames: Sequence[object],
                   closure_frames: Sequence[object]) -> float:
    """Vowel contrast of one motion set: the mean mouth opening (:func:`mouth_opening`) at
    open-vowel midpoints over the mean opening at bilabial midpoints, both pooled over the
    sequences; the bilabial mean counts as :data:`VOWEL_CONTRAST_FLOOR` (1 mm) when smaller.
    A mouth that opens for /a/ and seals for /p/ scores high; one that only follows
    loudness scores near 1; one that never opens near 0.

    vertices: ``[T, V, 3]`` / ``[T, V*3]`` or a list; lip_pairs: int ``[P, 2]``;
    open_frames, closure_frames: one int array of midpoint frames a sequence
    (:func:`articulation_frames`). A ratio."""
    return _class_ratio("vowel_contrast", vertices, "inner_lip_pairs", lip_pairs, ("open_vowel", open_frames),
                        ("bilabial", closure_frames))


def lip_rounding(vertices: Sequences, lip_corners: object, rounded_frames: Sequence[object],
                 spread_frames: Sequence[object]) -> float:
    """Lip rounding of one motion set: the mean mouth width at rounded-vowel midpoints
    over the mean width at spread-vowel midpoints, pooled over the sequences. The width
    of a frame is the distance between the lip corners (the mean over ``lip_corners``
    int ``[P, 2]`` pairs) divided by its sequence's median width, so subjects with wider
    mouths do not tilt the pooled ratio. Below 1 when the lips narrow for /u/ /o/ and
    widen for /i/; 1 for a mouth whose width never changes. A ratio."""
    return _class_ratio("lip_rounding", vertices, "lip_corners", lip_corners, ("rounded_vowel", rounded_frames),
                        ("spread_vowel", spread_frames))


def blink_statistics(vertices: Sequences, eyelid_pairs: object, fps: float) -> dict[str, float]:
    """Blinks of one motion set (:func:`blink_intervals` on every sequence):
    ``{"blink_rate": blinks per minute over the pooled duration, "blink_duration": mean
    seconds below the blink threshold (absent without a blink)}``."""
    if fps is None or fps <= 0:
        raise VoxmeshError(f"fps is {fps}; pass the sequences' positive frame rate to count blinks.")
    return _tally(vertices, {"eyelid_pairs": eyelid_pairs}, None, fps).result()


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
                       regions: Mapping[str, object], closures: Sequence[object] | None = None,
                       phoneme_frames: Sequence[Mapping[str, object]] | None = None,
                       fps: float | None = None) -> dict[str, float]:
    """Every metric whose inputs exist, keyed "LVE", "EVE", "FDD", "FDD_abs", "MVE", "MOD"
    and, with ``closures``, "lip_closure"; then the prediction's articulation measures
    "vowel_contrast", "lip_rounding", "blink_rate", "blink_duration".

    preds, gts: ``[T, V, 3]`` / ``[T, V*3]`` or lists; templates: one ``[V, 3]``, a list
    with one a sequence, or None (then no FDD); regions: name -> int ``[N]`` indices
    ("lips" -> LVE; "eye_forehead" or "emotion", else the union of "eyes" and
    "forehead" -> EVE; "upper_face" -> FDD) and name -> int ``[P, 2]`` pairs
    ("inner_lip_pairs" -> MOD, vowel contrast; "lip_corners" -> lip rounding;
    "eyelid_pairs" -> blinks). MVE is always computed. closures: one int array of
    bilabial closure frames a sequence (:func:`bilabial_closure_frames`); with
    "inner_lip_pairs" and at least one closure it adds lip-closure accuracy.
    phoneme_frames: one dict a sequence from :func:`articulation_frames` (class ->
    midpoint frames) for vowel contrast and lip rounding, present when some sequence has
    both classes; fps: the frame rate, for blink rate and duration (with "eyelid_pairs").
    The articulation measures describe the prediction alone: pass the ground truth as
    ``preds`` for its own values. Units: :data:`METRIC_UNITS`."""
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
    if phoneme_frames is not None or fps is not None:
        # Predictions cut to their ground truth's length, as every other metric scores them.
        cut = [p for p, _ in _paired(preds, gts)]
        results.update(_tally(cut, regions, phoneme_frames, fps).result())
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
    lip-closure accuracy (pooled over closures, present once a closure was seen); the
    articulation measures keep their sums (openings, widths, blinks, seconds).
    regions, fps: as evaluate_sequences takes them."""

    def __init__(self, regions: Mapping[str, object], fps: float | None = None):
        self.regions = regions
        self.fps = fps
        self._articulation = _ArticulationTally()
        self.sequences = 0
        self.frames = 0
        self.closures = 0
        self._weights = {"frames": 0, "positions": 0, "sequences": 0}
        self._sums: dict[str, _Sum] = {}
        self._closed = 0
        self._with_template: bool | None = None

    def add(self, pred: ArrayLike, gt: ArrayLike, template: ArrayLike | None,
            closure_frames: object | None = None,
            phoneme_frames: Mapping[str, object] | None = None) -> dict[str, float]:
        """Score one sequence (pred, gt: ``[T, V, 3]`` / ``[T, V*3]``, pred may be longer;
        template ``[V, 3]`` or None for no FDD; closure_frames: int ``[K]`` bilabial
        closure frames or None; phoneme_frames: its :func:`articulation_frames` or None)
        and return its own metrics."""
        if not (_is_array(pred) and _is_array(gt)):
            raise VoxmeshError("MetricAccumulator.add takes one sequence; pass a [T, V, 3] prediction and ground truth.")
        with_template = template is not None
        if self._with_template is not None and with_template != self._with_template:
            raise VoxmeshError(
                "Some sequences were added with a template and some without; pass a template with every sequence or none."
            )
        closures = None if closure_frames is None else [closure_frames]
        frames_list = None if phoneme_frames is None else [phoneme_frames]
        metrics = evaluate_sequences([pred], [gt], [template] if with_template else None, self.regions, closures,
                                     frames_list, self.fps)
        self._with_template = with_template
        (p, g), = _paired([pred], [gt])  # the [T, V, 3] views, for the frame and vertex counts
        if phoneme_frames is not None or self.fps is not None:
            self._articulation.merge(_tally([p], self.regions, frames_list, self.fps))
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
        results.update(self._articulation.result())
        return results


__all__ = [
    "ARTICULATION_CLASSES",
    "BILABIAL_PHONEMES",
    "BLINK_FRACTION",
    "BLINK_MIN_SECONDS",
    "LIP_CLOSURE_TOLERANCE",
    "METRIC_UNITS",
    "MetricAccumulator",
    "OPEN_VOWEL_PHONEMES",
    "ROUNDED_VOWEL_PHONEMES",
    "SPREAD_VOWEL_PHONEMES",
    "VOWEL_CONTRAST_FLOOR",
    "articulation_frames",
    "bilabial_closure_frames",
    "blink_intervals",
    "blink_statistics",
    "diversity",
    "emotional_vertex_error",
    "evaluate_sequences",
    "lip_closure_accuracy",
    "lip_rounding",
    "mean_pair_distance",
    "mouth_opening",
    "phoneme_midpoint_frames",
    "vowel_contrast",
    "lip_vertex_error",
    "mean_vertex_error",
    "mouth_open_difference",
    "upper_face_dynamics_deviation",
]

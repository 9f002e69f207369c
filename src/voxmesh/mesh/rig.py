"""The rig of the procedural head: identity shapes, jaw, visemes, expressions, blink.

Every shape is a smooth displacement field built from a few control regions (lip
corners, lip midlines, brows, lids, cheeks, jaw), never from single vertices. Fields are
stacked into one basis so a whole clip is posed with one matrix product; the three
motions that are rotations or contacts are applied exactly on top of it:

- the jaw turns about a hinge in front of the ears (plus a small forward slide), weighted
  per vertex so the lower lip, chin and lower mouth follow and the cheeks fall off;
- a bilabial closes the lips whatever the jaw does (the remaining gap between the lip
  rims is shared out to both lips), a labiodental tucks the lower lip under the upper
  teeth;
- a blink turns the lids about the eyeball centre until the rims meet.

Displacements are applied on top of the neutral face given to ``pose`` (a subject's
``identity_shape``), so every subject moves the same way from its own rest face.
"""

from __future__ import annotations

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.mesh.head import (
    CHIN_Y,
    EYE_Y,
    JAW_HINGE,
    NOSE_BOTTOM_Y,
    _smoothstep,
    build_head,
    jaw_weights,
)
from voxmesh.mesh.template import Template

__all__ = ["HeadRig", "IDENTITY_NAMES", "VISEME_NAMES", "EXPRESSION_NAMES", "STYLE_DEFAULTS"]

IDENTITY_NAMES = (
    "face_width", "face_length", "jaw_width", "chin", "nose_size", "lip_thickness",
    "eye_spacing", "cheek_fullness", "brow_height", "mouth_width", "nose_width", "head_size",
)
VISEME_NAMES = (
    "rest", "bilabial", "labiodental", "dental", "alveolar", "postalveolar", "velar", "r",
    "open_vowel", "mid_vowel", "close_vowel", "rounded_vowel", "w",
)
EXPRESSION_NAMES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

# Speaker style (``pose(style=...)``) and what each key does:
#   lip_amplitude: scales the viseme shapes (lip closure for p/b/m always completes);
#   jaw_amplitude: scales the jaw angle; smile: a constant smile (-1..1, frowning below 0);
#   asymmetry: one side of the mouth and brows moves more (-1..1, + favours the subject's left);
#   expression_amplitude: scales the expression weights;
#   lip_protrusion: a constant forward (+) or pulled-back (-) set of the lips (-1..1).
STYLE_DEFAULTS = {
    "lip_amplitude": 1.0,
    "jaw_amplitude": 1.0,
    "smile": 0.0,
    "asymmetry": 0.0,
    "expression_amplitude": 1.0,
    "lip_protrusion": 0.0,
}

# Jaw: forward/downward slide of the condyle per radian of opening (metres).
JAW_SLIDE_PER_RADIAN = np.array([0.0, -0.002, 0.007])
# Extra jaw angle (radians) each expression carries (surprise drops the jaw a little).
EXPRESSION_JAW = {"happy": 0.015, "fearful": 0.035, "surprised": 0.075}
# The fraction of the lid gap the lower lid closes in a blink (the upper lid does the rest).
BLINK_LOWER_SHARE = 0.25


class HeadRig:
    """Identity, jaw, viseme, expression and blink controls of the procedural head.

    ``HeadRig()`` builds the head (``build_head``); ``HeadRig(template)`` rigs a
    template of the same construction (its regions and vertex pairs are used).

    - ``identity_shape(coeffs [n_identity]) -> [V, 3]``: a subject's neutral face;
    - ``pose(neutral, jaw [T], visemes [T, n_visemes], expressions [T, n_expressions],
      blink [T], style) -> float32 [T, V, 3]``: a clip, on that subject's neutral;
    - ``mouth_opening(vertices [..., V, 3]) -> [...]``: mean inner-lip distance.

    Attributes: ``template``, ``identity_names``, ``viseme_names`` (13, "rest" first),
    ``expression_names`` (the eight RAVDESS emotions in RAVDESS order), ``jaw_weight``
    ``[V]``, ``hinge`` ``[3]``, ``eye_centers`` ``[2, 3]`` and the displacement bases
    ``identity_basis`` ``[n_identity, V, 3]``, ``viseme_basis`` ``[n_visemes, V, 3]``,
    ``expression_basis`` ``[n_expressions, V, 3]`` (metres per unit weight). Style keys
    and their meaning: ``STYLE_DEFAULTS``.
    """

    identity_names: tuple[str, ...] = IDENTITY_NAMES
    viseme_names: tuple[str, ...] = VISEME_NAMES
    expression_names: tuple[str, ...] = EXPRESSION_NAMES

    def __init__(self, template: Template | None = None) -> None:
        self.template = template if template is not None else build_head()
        tpl = self.template
        for name in ("upper_lip", "lower_lip", "eyeballs", "inner_mouth_upper", "inner_mouth_lower"):
            tpl.region(name)  # a clear error when the template lacks the head's regions
        for name in ("inner_lip_pairs", "eyelid_pairs", "lip_corners"):
            if name not in tpl.vertex_pairs:
                raise VoxmeshError(f"The template has no vertex pairs '{name}'; rig a head made by build_head().")
        self.num_vertices = tpl.num_vertices
        self._v = tpl.vertices.astype(np.float64)
        self.hinge = np.asarray(JAW_HINGE, dtype=np.float64)
        self.jaw_weight = jaw_weights(self._v, tpl.regions)
        self._jaw_index = np.nonzero(self.jaw_weight > 0.0)[0]
        self._setup_mouth()
        self._setup_eyes()
        fields = _Fields(self)
        self.identity_basis = np.stack([fields.identity(n) for n in IDENTITY_NAMES]).astype(np.float32)
        self.viseme_basis = np.stack([fields.viseme(n) for n in VISEME_NAMES]).astype(np.float32)
        self.expression_basis = np.stack([fields.expression(n) for n in EXPRESSION_NAMES]).astype(np.float32)
        self._smile = fields.smile().astype(np.float32)
        self._protrusion = fields.protrusion().astype(np.float32)
        self._expression_jaw = np.array([EXPRESSION_JAW.get(n, 0.0) for n in EXPRESSION_NAMES])
        # Asymmetry weights the displacement of one side more: +1 on the subject's left.
        self._side = np.tanh(self._v[:, 0] / 0.015)
        self._stack_bases()

    # ---- geometry ----------------------------------------------------------------------
    def _setup_mouth(self) -> None:
        tpl, v = self.template, self._v
        pairs = tpl.vertex_pairs["inner_lip_pairs"]
        order = np.argsort(v[pairs[:, 0], 0])
        self.lip_pairs = pairs[order]
        corners = tpl.vertex_pairs["lip_corners"].reshape(-1)
        self.corners = v[corners]
        self.mouth_half_width = 0.5 * abs(self.corners[1, 0] - self.corners[0, 0])
        self.mouth_y = float(np.mean(v[self.lip_pairs[:, 0], 1]))
        # Rim depth along the mouth, with the corners at the ends (for the inner mouth).
        rim = np.concatenate([self.corners[:1], v[self.lip_pairs[:, 0]], self.corners[1:]])
        self._rim_x, self._rim_z = rim[:, 0], rim[:, 2]
        # Which side of the lip line each vertex is on: 1 upper, 0 lower, smooth on the
        # cheeks beyond the corners (the lip copies and inner mouth halves decide it near
        # the opening, where upper and lower vertices can share a position).
        x, y = v[:, 0], v[:, 1]
        a = self.mouth_half_width
        width = 0.0015 + 0.012 * _smoothstep(a - 0.002, a + 0.02, np.abs(x))
        upper = _smoothstep(self.mouth_y - width, self.mouth_y + width, y)
        for name in ("upper_lip", "inner_mouth_upper", "teeth_upper"):
            upper[tpl.regions.get(name, [])] = 1.0
        for name in ("lower_lip", "inner_mouth_lower", "teeth_lower"):
            upper[tpl.regions.get(name, [])] = 0.0
        self.upper_side = upper
        # Inner mouth vertices follow the lips less the deeper they lie; teeth do not.
        depth = np.clip(np.interp(x, self._rim_x, self._rim_z) - v[:, 2], 0.0, None)
        inner = np.zeros(len(v), bool)
        inner[tpl.regions.get("inner_mouth", [])] = True
        follow = np.where(inner, 1.0 - _smoothstep(0.002, 0.016, depth), 1.0)
        follow[tpl.regions.get("teeth", [])] = 0.0
        follow[tpl.regions["eyeballs"]] = 0.0
        self.mouth_follow = follow
        # Lip-contact operators: the gap of each rim pair is shared out along the mouth
        # (hat functions over the pairs' x) and fades away from the rim.
        px = v[self.lip_pairs[:, 0], 0]
        near = np.nonzero((np.abs(x) < a + 0.004) & (np.abs(y - self.mouth_y) < 0.016) & (follow > 0.0))[0]
        # The corners are knots too, with no gap of their own: the share fades to them.
        knots = np.concatenate([[self.corners[0, 0]], px, [self.corners[1, 0]]])
        hat = _hat_weights(v[near, 0], knots)[:, 1:-1]  # [n_near, P]
        fade = np.exp(-((y[near] - self.mouth_y) / 0.0065) ** 2) * follow[near]
        fade = np.where(inner[near], follow[near], fade)
        up = upper[near]
        self._contact_index = near
        self._contact_upper = (hat * (fade * up)[:, None]).astype(np.float32)
        self._contact_lower = (hat * (fade * (1.0 - up))[:, None]).astype(np.float32)
        # f/v: the lower rim goes under the upper teeth edge, less toward the corners.
        ps = np.clip(px / a, -1.0, 1.0)
        self._tuck_taper = (np.sqrt(1.0 - ps ** 2) ** 0.5).astype(np.float32)
        self._tuck_offset = (np.array([0.0, -0.0015, -0.0042])[None, :] * self._tuck_taper[:, None]).astype(np.float32)
        # Exact rim values (the rims themselves take their own pair's gap in full).
        for k, (u_idx, l_idx) in enumerate(self.lip_pairs):
            for idx, mat in ((u_idx, self._contact_upper), (l_idx, self._contact_lower)):
                row = np.nonzero(near == idx)[0]
                mat[row] = 0.0
                mat[row, k] = 1.0

    def _setup_eyes(self) -> None:
        tpl, v = self.template, self._v
        balls = tpl.regions["eyeballs"]
        pairs = tpl.vertex_pairs["eyelid_pairs"]
        self.eye_centers = []
        lid_index, lid_angle, lid_eye, lid_wide = [], [], [], []
        for side in (-1.0, 1.0):
            ball = balls[np.sign(v[balls, 0]) == side]
            center = 0.5 * (v[ball].min(axis=0) + v[ball].max(axis=0))  # the sphere's centre
            self.eye_centers.append(center)
            eye_pairs = pairs[np.sign(v[pairs[:, 0], 0]) == side]
            eye_pairs = eye_pairs[np.argsort(v[eye_pairs[:, 0], 0])]
            q_u = v[eye_pairs[:, 0]] - center
            q_l = v[eye_pairs[:, 1]] - center
            el_u = np.arctan2(q_u[:, 1], q_u[:, 2])
            el_l = np.arctan2(q_l[:, 1], q_l[:, 2])
            # Canthi: where the rims meet, one column beyond the last pair on each side.
            step = np.diff(q_u[:, 0]).mean()
            rx = np.concatenate([[q_u[0, 0] - step], q_u[:, 0], [q_u[-1, 0] + step]])
            mid = 0.5 * (el_u + el_l)
            el_u_c = np.concatenate([[mid[0]], el_u, [mid[-1]]])
            el_l_c = np.concatenate([[mid[0]], el_l, [mid[-1]]])
            close = el_l_c + BLINK_LOWER_SHARE * (el_u_c - el_l_c)
            q = v - center
            el = np.arctan2(q[:, 1], q[:, 2])
            radial = np.hypot(q[:, 0] / 1.15, np.hypot(q[:, 1], q[:, 2]))
            near = np.nonzero((radial < 0.026) & (q[:, 2] > -0.004) & (np.abs(q[:, 0]) < 0.021))[0]
            near = np.setdiff1d(near, balls)
            qx = q[near, 0]
            inside = (qx > rx[0]) & (qx < rx[-1])
            eu = np.interp(qx, rx, el_u_c)
            elo = np.interp(qx, rx, el_l_c)
            ec = np.interp(qx, rx, close)
            mid_v = 0.5 * (eu + elo)
            is_upper = el[near] >= mid_v
            is_upper[np.isin(near, eye_pairs[:, 1])] = False
            is_upper[np.isin(near, eye_pairs[:, 0])] = True
            # Fade away from the rim: to the lid crease above, into the cheek below; and
            # toward the corners of the eye.
            # Only the lid skin over the eyeball turns; the brow ridge further out stays.
            over_ball = 1.0 - _smoothstep(0.0155, 0.021, radial[near])
            fade_up = (1.0 - _smoothstep(0.0, 0.5, el[near] - eu)) * over_ball
            fade_lo = (1.0 - _smoothstep(0.0, 0.55, elo - el[near])) * over_ball
            corner = 1.0 - _smoothstep(0.6, 1.0, np.abs(qx - 0.5 * (rx[0] + rx[-1])) / (0.5 * (rx[-1] - rx[0])))
            angle = np.where(is_upper, (ec - eu) * fade_up, (ec - elo) * fade_lo)
            angle = np.where(inside, angle, 0.0)
            # "Eyes wide" moves the upper lid up and the lower lid down by one radian.
            wide = np.where(is_upper, fade_up, -fade_lo) * corner
            wide = np.where(inside | (np.abs(qx) < 0.018), wide, 0.0)
            lid_index.append(near)
            lid_angle.append(angle)
            lid_eye.append(np.full(len(near), int(side > 0)))
            lid_wide.append(wide)
        self.eye_centers = np.stack(self.eye_centers)
        self._lid_index = np.concatenate(lid_index)
        self._lid_close = np.concatenate(lid_angle)
        self._lid_eye = np.concatenate(lid_eye)
        self._lid_wide = np.concatenate(lid_wide)

    def _stack_bases(self) -> None:
        n_v, n_e = len(VISEME_NAMES), len(EXPRESSION_NAMES)
        flat = np.concatenate([
            self.viseme_basis.reshape(n_v, -1),
            self.expression_basis.reshape(n_e, -1),
            self._smile.reshape(1, -1),
            self._protrusion.reshape(1, -1),
        ]).reshape(n_v + n_e + 2, self.num_vertices, 3)
        self._basis = np.ascontiguousarray(flat.reshape(len(flat), -1), dtype=np.float32)
        # The same rows weighted by side, for asymmetry (+1 on the subject's left).
        side = np.repeat(self._side, 3)[None, :].astype(np.float32)
        self._basis_side = np.ascontiguousarray(self._basis * side)

    # ---- public --------------------------------------------------------------------------
    @property
    def n_identity(self) -> int:
        return len(IDENTITY_NAMES)

    @property
    def n_visemes(self) -> int:
        return len(VISEME_NAMES)

    @property
    def n_expressions(self) -> int:
        return len(EXPRESSION_NAMES)

    def identity_shape(self, coeffs: np.ndarray) -> np.ndarray:
        """A subject's neutral face, float32 ``[V, 3]``, from identity coefficients
        ``[n_identity]`` (about -1..1 each; 0 is the template)."""
        coeffs = np.asarray(coeffs, dtype=np.float32).reshape(-1)
        if coeffs.shape[0] != self.n_identity:
            raise VoxmeshError(
                f"identity_shape got {coeffs.shape[0]} coefficients; pass {self.n_identity} "
                f"in the order {', '.join(IDENTITY_NAMES)}."
            )
        out = self.template.vertices + np.tensordot(coeffs, self.identity_basis, axes=1)
        return out.astype(np.float32)

    def pose(
        self,
        neutral: np.ndarray,
        jaw: np.ndarray,
        visemes: np.ndarray,
        expressions: np.ndarray,
        blink: np.ndarray,
        style: dict | None = None,
    ) -> np.ndarray:
        """Animate a neutral face: float32 ``[T, V, 3]``.

        neutral ``[V, 3]`` (a subject's ``identity_shape``); jaw ``[T]`` opening angle in
        radians (0..~0.44); visemes ``[T, n_visemes]`` and expressions
        ``[T, n_expressions]`` weights (usually 0..1, in the order of ``viseme_names``
        and ``expression_names``); blink ``[T]`` in [0, 1] (1 closes the eyes); style an
        optional dict of speaker-style values (``STYLE_DEFAULTS`` lists the keys).
        """
        neutral = np.asarray(neutral, dtype=np.float32)
        if neutral.shape != (self.num_vertices, 3):
            raise VoxmeshError(f"pose got a neutral face of shape {neutral.shape}; expected [{self.num_vertices}, 3].")
        jaw = np.asarray(jaw, dtype=np.float64).reshape(-1)
        n_frames = len(jaw)
        visemes = _frames(visemes, n_frames, self.n_visemes, "visemes")
        expressions = _frames(expressions, n_frames, self.n_expressions, "expressions")
        blink = np.clip(np.asarray(blink, dtype=np.float64).reshape(-1), 0.0, 1.0)
        if len(blink) != n_frames:
            raise VoxmeshError(f"pose got {len(blink)} blink values for {n_frames} jaw frames; pass one a frame.")
        st = dict(STYLE_DEFAULTS)
        if style:
            unknown = sorted(set(style) - set(STYLE_DEFAULTS))
            if unknown:
                raise VoxmeshError(f"Unknown style keys {unknown}; use {sorted(STYLE_DEFAULTS)}.")
            st.update({k: float(v) for k, v in style.items()})

        # Linear part: one matrix product over the stacked displacement bases.
        weights = np.concatenate([
            visemes * st["lip_amplitude"],
            expressions * st["expression_amplitude"],
            np.full((n_frames, 1), st["smile"]),
            np.full((n_frames, 1), st["lip_protrusion"]),
        ], axis=1).astype(np.float32)
        used = np.nonzero(np.any(weights != 0.0, axis=0))[0]  # skip fields nobody uses
        basis = self._basis[used]
        if st["asymmetry"]:
            basis = basis + np.float32(st["asymmetry"]) * self._basis_side[used]
        out = (weights[:, used] @ basis).reshape(n_frames, self.num_vertices, 3)
        out += neutral[None]

        # Jaw: rotation about the hinge (x axis) plus a small slide, blended per vertex.
        # Each step below gathers the vertices it moves once and writes them back once.
        angle = jaw * st["jaw_amplitude"] + (expressions * st["expression_amplitude"]) @ self._expression_jaw
        idx = self._jaw_index
        sub = out[:, idx]  # [T, J, 3]
        w = self.jaw_weight[idx].astype(np.float32)[None, :]
        c = np.cos(angle).astype(np.float32)[:, None]
        s = np.sin(angle).astype(np.float32)[:, None]
        slide = (angle[:, None] * JAW_SLIDE_PER_RADIAN[None, :]).astype(np.float32)
        py = sub[..., 1] - np.float32(self.hinge[1])
        pz = sub[..., 2] - np.float32(self.hinge[2])
        sub[..., 1] += w * (np.float32(self.hinge[1]) + py * c - pz * s + slide[:, 1:2] - sub[..., 1])
        sub[..., 2] += w * (np.float32(self.hinge[2]) + py * s + pz * c + slide[:, 2:3] - sub[..., 2])
        out[:, idx] = sub

        # Lip contacts: p/b/m close the remaining gap (both lips meet half-way); f/v
        # bring the lower rim up under the upper teeth.
        seal = np.clip(visemes[:, VISEME_NAMES.index("bilabial")], 0.0, 1.0).astype(np.float32)
        tuck = np.clip(visemes[:, VISEME_NAMES.index("labiodental")], 0.0, 1.0).astype(np.float32)
        if np.any(seal > 0) or np.any(tuck > 0):
            upper_rim, lower_rim = out[:, self.lip_pairs[:, 0]], out[:, self.lip_pairs[:, 1]]  # [T, P, 3]
            gap = upper_rim - lower_rim
            tuck_gap = (upper_rim + self._tuck_offset[None] - lower_rim) * self._tuck_taper[None, :, None]
            share = (0.5 * seal * (1.0 - tuck))[:, None, None]
            lower_move = share * gap + tuck[:, None, None] * tuck_gap
            near = self._contact_index
            out[:, near] += (np.einsum("vp,tpc->tvc", self._contact_lower, lower_move)
                             - np.einsum("vp,tpc->tvc", self._contact_upper, share * gap))

        # Blink: turn each lid point about its eyeball centre toward the closing line.
        if np.any(blink > 0):
            idx = self._lid_index
            centers = _eye_centers_of(neutral, self)[self._lid_eye].astype(np.float32)
            turn = (blink[:, None] * self._lid_close[None, :]).astype(np.float32)
            sub = out[:, idx]
            qy = sub[..., 1] - centers[None, :, 1]
            qz = sub[..., 2] - centers[None, :, 2]
            c, s = np.cos(turn), np.sin(turn)
            sub[..., 1] = centers[None, :, 1] + qy * c + qz * s
            sub[..., 2] = centers[None, :, 2] - qy * s + qz * c
            out[:, idx] = sub
        return out

    # ---- convenience ---------------------------------------------------------------------
    def mouth_opening(self, vertices: np.ndarray) -> np.ndarray:
        """Mean distance between the inner-lip rim pairs, ``[...]`` for vertices ``[..., V, 3]``."""
        v = np.asarray(vertices)
        return np.linalg.norm(v[..., self.lip_pairs[:, 0], :] - v[..., self.lip_pairs[:, 1], :], axis=-1).mean(-1)

    def lip_seal(self, vertices: np.ndarray) -> np.ndarray:
        """The displacement float64 ``[V, 3]`` that closes the lips of one posed face
        ``vertices [V, 3]``: each rim pair's gap shared out half to each lip, with the
        same smooth falloff as the seal of a bilabial in :meth:`pose`."""
        v = np.asarray(vertices, dtype=np.float64)
        half_gap = 0.5 * (v[self.lip_pairs[:, 0]] - v[self.lip_pairs[:, 1]])  # [P, 3]
        out = np.zeros_like(v)
        out[self._contact_index] = self._contact_lower @ half_gap - self._contact_upper @ half_gap
        return out


def _eye_centers_of(neutral: np.ndarray, rig: HeadRig) -> np.ndarray:
    """Eyeball centres ``[2, 3]`` (subject's right, left) of a neutral face."""
    balls = rig.template.regions["eyeballs"]
    v = np.asarray(neutral, dtype=np.float32)
    side = np.sign(rig._v[balls, 0])
    return np.stack([0.5 * (v[b].min(axis=0) + v[b].max(axis=0)) for b in (balls[side < 0], balls[side > 0])])


def _frames(values, n_frames: int, width: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and n_frames == 1 and arr.shape[0] == width:
        arr = arr[None]
    if arr.shape != (n_frames, width):
        raise VoxmeshError(f"pose got {what} of shape {arr.shape}; expected [{n_frames}, {width}] (frames, {what}).")
    return arr


def _hat_weights(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights ``[N, K]`` of points ``x`` over sorted
    ``knots`` (constant beyond the ends)."""
    n, k = len(x), len(knots)
    out = np.zeros((n, k))
    pos = np.clip(np.searchsorted(knots, x) - 1, 0, k - 2)
    t = np.clip((x - knots[pos]) / (knots[pos + 1] - knots[pos]), 0.0, 1.0)
    out[np.arange(n), pos] = 1.0 - t
    out[np.arange(n), pos + 1] += t
    return out


class _Fields:
    """The displacement fields ``[V, 3]`` (metres), built from smooth control regions."""

    def __init__(self, rig: HeadRig) -> None:
        self.rig = rig
        tpl = rig.template
        self.v = rig._v
        self.x, self.y, self.z = self.v[:, 0], self.v[:, 1], self.v[:, 2]
        self.n = len(self.v)
        self.a = rig.mouth_half_width
        self.ym = rig.mouth_y
        self.upper = rig.upper_side
        self.follow = rig.mouth_follow
        self.eyeballs = tpl.regions["eyeballs"]
        self.teeth = tpl.regions.get("teeth", np.zeros(0, dtype=np.int64))
        self.front = (self.z > 0.03).astype(float)
        x, y = self.x, self.y
        ax = np.abs(x)
        a, ym = self.a, self.ym
        # Position along the mouth (-1 at the subject's right corner, +1 at the left).
        self.s = x / a
        # Falloffs around the mouth: past the corners over the cheek, up to the nose,
        # down to the chin; and a narrower one that is mostly the red of the lips.
        self.lateral = 1.0 - _smoothstep(a, a + 0.024, ax)
        up = 1.0 - _smoothstep(ym + 0.005, NOSE_BOTTOM_Y + 0.001, y)
        down = 1.0 - _smoothstep(ym - 0.008, ym - 0.034, y)
        self.vertical = (self.upper * up + (1.0 - self.upper) * down) * self.follow
        up_red = 1.0 - _smoothstep(ym + 0.004, ym + 0.017, y)
        down_red = 1.0 - _smoothstep(ym - 0.005, ym - 0.022, y)
        self.vertical_red = (self.upper * up_red + (1.0 - self.upper) * down_red) * self.follow
        self.rimness = np.exp(-((y - ym) / 0.004) ** 2) * self.follow
        self.profile = np.clip(1.0 - self.s ** 2, 0.0, 1.0) ** 0.6  # 1 mid-mouth, 0 at the corners
        self.normals = _vertex_normals(self.v, tpl.faces)

    def zero(self) -> np.ndarray:
        return np.zeros((self.n, 3))

    def _clean(self, d: np.ndarray) -> np.ndarray:
        d[self.eyeballs] = 0.0
        return d

    # ---- mouth primitives (1 m at the control point) ----
    def lips_part(self) -> np.ndarray:
        """Upper lip up, lower lip down; most in the middle, none at the corners."""
        d = self.zero()
        d[:, 1] = (2.0 * self.upper - 1.0) * self.profile * self.vertical
        return self._clean(d)

    def spread(self) -> np.ndarray:
        """Corners outward by 1 (the lips stretch evenly; negative narrows the mouth),
        with the corners sliding back along the teeth as they widen."""
        d = self.zero()
        band = self.lateral * (self.upper * (1 - _smoothstep(self.ym + 0.004, NOSE_BOTTOM_Y, self.y))
                               + (1 - self.upper) * (1 - _smoothstep(self.ym - 0.006, self.ym - 0.03, self.y)))
        band *= self.follow
        xs = np.clip(self.s, -1.0, 1.0)
        d[:, 0] = xs * band
        d[:, 2] = -0.35 * xs ** 2 * band
        return self._clean(d)

    def protrude(self) -> np.ndarray:
        """Both lips forward, most in the middle."""
        d = self.zero()
        d[:, 2] = (0.45 + 0.55 * self.profile) * self.lateral * self.vertical_red
        return self._clean(d)

    def corner_gauss(self, sigma: float = 0.009) -> np.ndarray:
        ax = np.abs(self.x)
        return np.exp(-(((ax - self.a) ** 2 + (self.y - self.ym) ** 2) / (2.0 * sigma ** 2))) * self.follow * self.front

    def corners_up(self) -> np.ndarray:
        d = self.zero()
        d[:, 1] = self.corner_gauss()
        return self._clean(d)

    def corners_back(self) -> np.ndarray:
        d = self.zero()
        g = self.corner_gauss(0.011)
        d[:, 2] = -g
        d[:, 0] = 0.4 * np.sign(self.x) * g
        return self._clean(d)

    def upper_lip_raise(self) -> np.ndarray:
        """Upper lip up, the sides (over the canines) most."""
        d = self.zero()
        prof = 0.55 + 0.45 * np.exp(-((np.abs(self.s) - 0.5) / 0.3) ** 2)
        up = self.upper * (1.0 - _smoothstep(self.ym + 0.006, NOSE_BOTTOM_Y + 0.002, self.y)) * self.follow
        d[:, 1] = prof * up * self.lateral
        d[:, 2] = 0.25 * prof * up * self.lateral
        return self._clean(d)

    def lower_lip_tuck(self) -> np.ndarray:
        """Lower lip rolls in and up (its rim most)."""
        d = self.zero()
        w = (1.0 - self.upper) * self.vertical_red * (0.35 + 0.65 * self.profile) * self.lateral
        roll = np.exp(-((self.ym - self.y) / 0.007) ** 2)
        d[:, 2] = -(0.4 + 0.6 * roll) * w
        d[:, 1] = 0.35 * roll * w
        return self._clean(d)

    def lips_press(self) -> np.ndarray:
        """Lips pressed thin: the red rolls in toward the lip line and back."""
        d = self.zero()
        w = self.vertical_red * self.lateral * (0.4 + 0.6 * self.profile)
        d[:, 2] = -w
        d[:, 1] = -np.tanh((self.y - self.ym) / 0.003) * 0.5 * w
        return self._clean(d)

    def lips_funnel(self) -> np.ndarray:
        """Lip rims flare out and forward (as for 'sh')."""
        d = self.zero()
        w = self.rimness * self.profile * self.lateral
        d[:, 2] = w
        d[:, 1] = (2.0 * self.upper - 1.0) * 0.5 * w
        return self._clean(d)

    def lower_lip_pout(self) -> np.ndarray:
        """Lower lip pushed up and out by the chin (sadness)."""
        d = self.zero()
        w = (1.0 - self.upper) * self.vertical * self.lateral
        d[:, 2] = 0.8 * w
        d[:, 1] = 0.5 * w * (1.0 - self.rimness)  # the rim itself stays under the upper lip
        return self._clean(d)

    # ---- face primitives ----
    def gauss(self, center, sigma, mirror=True):
        c = np.asarray(center, float)
        sig = np.broadcast_to(np.asarray(sigma, float), (3,))
        x = np.abs(self.x) if mirror else self.x
        r2 = ((x - c[0]) / sig[0]) ** 2 + ((self.y - c[1]) / sig[1]) ** 2 + ((self.z - c[2]) / sig[2]) ** 2
        return np.exp(-0.5 * r2)

    def cheeks_raise(self) -> np.ndarray:
        d = self.zero()
        g = self.gauss((0.036, -0.014, 0.072), (0.014, 0.013, 0.03)) * self.front
        d[:, 1] = g
        d[:, 2] = 0.45 * g
        return self._clean(d)

    def nose_wrinkle(self) -> np.ndarray:
        d = self.zero()
        g = self.gauss((0.011, 0.006, 0.095), (0.008, 0.009, 0.03)) * self.front
        g2 = self.gauss((0.016, -0.016, 0.093), (0.007, 0.006, 0.03)) * self.front
        d[:, 1] = g + 0.6 * g2
        d[:, 2] = -0.3 * g
        return self._clean(d)

    def nostrils_flare(self) -> np.ndarray:
        d = self.zero()
        g = self.gauss((0.017, -0.017, 0.092), (0.006, 0.006, 0.03)) * self.front
        d[:, 0] = np.sign(self.x) * g
        return self._clean(d)

    def _brow_vertical(self) -> np.ndarray:
        """1 on the brows, fading to a quarter at the hairline and to 0 above the lid."""
        y = self.y
        brow_y = EYE_Y + 0.019
        above = 1.0 - 0.75 * _smoothstep(brow_y, 0.112, y)
        below = _smoothstep(EYE_Y + 0.007, brow_y - 0.001, y)
        return np.where(y >= brow_y, above, below) * self.front * (self.z > 0.05)

    def brows(self, inner: float, outer: float, squeeze: float = 0.0) -> np.ndarray:
        """Brows up by ``inner``/``outer`` at those ends; ``squeeze`` pulls them together."""
        d = self.zero()
        vert = self._brow_vertical()
        g_in = self.gauss((0.017, 0.0, 0.0), (0.011, 1.0, 1.0))
        g_out = self.gauss((0.043, 0.0, 0.0), (0.012, 1.0, 1.0))
        reach = 1.0 - _smoothstep(0.05, 0.066, np.abs(self.x))
        d[:, 1] = (inner * g_in + outer * g_out) * vert * reach
        d[:, 0] = -np.tanh(self.x / 0.006) * squeeze * g_in * vert
        d[:, 2] = -0.25 * np.abs(squeeze) * g_in * vert
        return self._clean(d)

    def eyelids(self, upper: float, lower: float) -> np.ndarray:
        """Lids turned about the eyeball (radians, linearised): ``upper`` > 0 lifts the
        upper lid (eyes wide), ``lower`` > 0 lifts the lower lid (a squint)."""
        rig = self.rig
        d = self.zero()
        idx = rig._lid_index
        centers = rig.eye_centers[rig._lid_eye]
        q = self.v[idx] - centers
        wide = rig._lid_wide
        amount = np.where(wide > 0, upper * wide, -lower * wide)
        # d/dangle of a turn about x: (0, z, -y) relative to the centre.
        d[idx, 1] = amount * q[:, 2]
        d[idx, 2] = -amount * q[:, 1]
        return self._clean(d)

    # ---- visemes ----
    def viseme(self, name: str) -> np.ndarray:
        f = self
        if name == "rest":
            return f.zero()
        if name == "bilabial":  # plus the exact lip seal in pose()
            return 0.0012 * f.lips_press() + 0.0008 * f.protrude()
        if name == "labiodental":  # plus the lower-lip tuck contact in pose()
            return 0.0012 * f.upper_lip_raise() + 0.0018 * f.lower_lip_tuck()
        if name == "dental":
            return 0.0016 * f.lips_part() + 0.0015 * f.spread() + 0.0005 * f.upper_lip_raise()
        if name == "alveolar":
            return 0.0011 * f.lips_part() + 0.002 * f.spread()
        if name == "postalveolar":
            return -0.003 * f.spread() + 0.0038 * f.protrude() + 0.0015 * f.lips_funnel() + 0.0012 * f.lips_part()
        if name == "velar":
            return 0.0015 * f.lips_part() + 0.001 * f.spread()
        if name == "r":
            return -0.0032 * f.spread() + 0.003 * f.protrude() + 0.0012 * f.lips_part() + 0.0005 * f.lips_funnel()
        if name == "open_vowel":
            return 0.0042 * f.lips_part() + 0.0015 * f.spread() + 0.0008 * f.upper_lip_raise()
        if name == "mid_vowel":
            return 0.0026 * f.lips_part() + 0.002 * f.spread()
        if name == "close_vowel":
            return 0.0038 * f.spread() + 0.0008 * f.corners_up() + 0.001 * f.lips_part()
        if name == "rounded_vowel":
            return -0.0065 * f.spread() + 0.0045 * f.protrude() + 0.0021 * f.lips_part() + 0.001 * f.lips_funnel()
        if name == "w":
            return -0.0075 * f.spread() + 0.0055 * f.protrude() + 0.0009 * f.lips_part() + 0.0005 * f.lips_funnel()
        raise KeyError(name)

    # ---- expressions ----
    def expression(self, name: str) -> np.ndarray:
        f = self
        if name == "neutral":
            return f.zero()
        if name == "calm":
            return f.eyelids(-0.05, 0.0) + 0.0007 * f.corners_up() - f.brows(0.0005, 0.0005)
        if name == "happy":
            return (0.0055 * f.corners_up() + 0.004 * f.spread() + 0.003 * f.cheeks_raise()
                    + f.eyelids(-0.03, 0.07) + 0.0008 * f.upper_lip_raise() + 0.0008 * f.lips_part()
                    + f.brows(0.0, -0.0006))
        if name == "sad":
            return (f.brows(0.0036, -0.0012, 0.001) - 0.003 * f.corners_up() + 0.0012 * f.lower_lip_pout()
                    + f.eyelids(-0.07, 0.0))
        if name == "angry":
            return (f.brows(-0.0036, -0.0014, 0.0026) + 0.0022 * f.lips_press() + f.eyelids(0.03, 0.08)
                    + 0.0012 * f.nostrils_flare() - 0.001 * f.corners_up())
        if name == "fearful":
            return (f.brows(0.0046, 0.002, 0.0016) + f.eyelids(0.14, -0.02) + 0.0028 * f.spread()
                    + 0.002 * f.corners_back() - 0.0012 * f.corners_up() + 0.0016 * f.lips_part())
        if name == "disgust":
            return (0.002 * f.nose_wrinkle() + 0.003 * f.upper_lip_raise() + f.eyelids(0.0, 0.07)
                    + f.brows(-0.0025, -0.0008, 0.0015) - 0.0025 * f.corners_up())
        if name == "surprised":
            return (f.brows(0.006, 0.0055) + f.eyelids(0.17, -0.03) + 0.0015 * f.lips_part()
                    - 0.002 * f.spread())
        raise KeyError(name)

    def smile(self) -> np.ndarray:
        return 0.003 * self.corners_up() + 0.002 * self.spread() + 0.001 * self.cheeks_raise()

    def protrusion(self) -> np.ndarray:
        return 0.002 * self.protrude()

    # ---- identity ----
    def identity(self, name: str) -> np.ndarray:
        x, y, z = self.x, self.y, self.z
        d = self.zero()
        a, ym = self.a, self.ym
        if name == "face_width":
            taper = 1.0 - 0.5 * _smoothstep(0.06, 0.14, y)
            d[:, 0] = 0.055 * x * taper
        elif name == "face_length":
            lower = np.clip(y - EYE_Y, CHIN_Y - 0.02 - EYE_Y, 0.0)
            d[:, 1] = 0.075 * lower + 0.035 * np.clip(y - EYE_Y - 0.02, 0.0, None)
        elif name == "jaw_width":
            g = self.gauss((0.045, -0.062, 0.005), (0.03, 0.024, 0.035))
            d[:, 0] = 0.006 * (x / 0.045) * g
        elif name == "chin":
            g = self.gauss((0.0, -0.082, 0.085), (0.016, 0.014, 0.02), mirror=False)
            d[:, 2] = 0.006 * g
            d[:, 1] = -0.003 * g
        elif name == "nose_size":
            g = self.gauss((0.0, -0.004, 0.1), (0.014, 0.022, 0.02), mirror=False) * _smoothstep(0.075, 0.09, z)
            root = np.array([0.0, 0.004, 0.082])
            d[:] = 0.15 * (self.v - root) * g[:, None]
        elif name == "lip_thickness":
            g = self.gauss((0.0, ym, 0.1), (a * 0.75, 0.011, 0.03), mirror=False) * self.follow
            d[:, 1] = 0.35 * (y - ym) * g
            d[:, 2] = 0.0015 * g
        elif name == "eye_spacing":
            g = self.gauss((0.0315, EYE_Y, 0.075), (0.02, 0.018, 0.03))
            d[:, 0] = 0.003 * np.tanh(x / 0.008) * g
        elif name == "cheek_fullness":
            g = self.gauss((0.045, -0.02, 0.05), (0.02, 0.022, 0.03)) * (z > -0.02)
            d[:] = 0.005 * self.normals * g[:, None]
        elif name == "brow_height":
            g = self.gauss((0.03, EYE_Y + 0.019, 0.085), (0.024, 0.01, 0.03)) * self.front
            d[:, 1] = 0.003 * g
            d[:, 2] = 0.0015 * g
        elif name == "mouth_width":
            d = 0.004 * self.spread()
        elif name == "nose_width":
            g = self.gauss((0.0, -0.013, 0.095), (0.016, 0.012, 0.02), mirror=False)
            d[:, 0] = 0.003 * np.tanh(x / 0.006) * g
        elif name == "head_size":
            d[:] = 0.035 * self.v  # about the origin, between the ears
        else:
            raise KeyError(name)
        d[self.teeth] = _teeth_rigid(d, self.teeth)
        return self._rigid_eyes(d)

    def _rigid_eyes(self, d: np.ndarray) -> np.ndarray:
        """Near each eye the field becomes a translation (its value at the eyeball
        centre), so the eyeball moves rigidly and the lids stay around it."""
        out = d.copy()
        for center in self.rig.eye_centers:
            r = np.linalg.norm(self.v - center, axis=1)
            k = 1.0 - _smoothstep(0.016, 0.028, r)
            at_center = _interp_field(d, self.v, center)
            out = out * (1.0 - k[:, None]) + at_center[None, :] * k[:, None]
            ball = self.eyeballs[np.linalg.norm(self.v[self.eyeballs] - center, axis=1) < 0.02]
            out[ball] = at_center
        return out


def _teeth_rigid(d: np.ndarray, teeth: np.ndarray) -> np.ndarray:
    """Teeth follow an identity field by its mean over them (teeth do not bend)."""
    if len(teeth) == 0:
        return d[teeth]
    return np.broadcast_to(d[teeth].mean(axis=0), (len(teeth), 3))


def _interp_field(d: np.ndarray, v: np.ndarray, point: np.ndarray) -> np.ndarray:
    """A field's value at a point: its Gaussian-weighted mean over the vertices nearby."""
    r = np.linalg.norm(v - point, axis=1)
    w = np.exp(-((r / 0.02) ** 2))
    return (d * w[:, None]).sum(axis=0) / w.sum()


def _vertex_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    n = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, faces[:, k], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

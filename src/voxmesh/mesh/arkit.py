"""Apple ARKit's 52 face blendshapes on the procedural head, and the solve from any motion
of the head to their weights.

Names. :data:`ARKIT_NAMES` holds the 52 names in the one canonical order of voxmesh: the
column order of a Live Link Face CSV (Epic's iPhone app), spelled as Apple spells them
(``eyeBlinkLeft`` ... ``tongueOut``); :data:`LIVE_LINK_NAMES` is the same order in the
app's capitalised spelling (``EyeBlinkLeft``). The app's order differs from the ARKit
documentation's list and from Unreal's ``EARFaceBlendShape`` enum in two places:
``JawRight`` comes before ``JawLeft`` and ``MouthRight`` before ``MouthLeft``.
:func:`match_names` pairs any list of names with them, whatever the case or separators
(``JawOpen``, ``jawOpen``, ``jaw_open``, ``eyeBlink_L``), and says which it did not find.
Left and right are the subject's own, as in ARKit: ``eyeBlinkLeft`` closes the eye on
the subject's left (+x on the head).

Shapes. :class:`ArkitShapes` builds the 52 shapes on the head as displacement fields
``[52, V, 3]`` (metres at weight 1), from the rig's smooth control fields (rig.py):
the jaw turning about its hinge, the lips parting, pressing, rolling, funnelling and
protruding, the mouth corners up, down, out and back, brows, lids and eyeballs, cheeks
and nose. Two are approximations: ``jawOpen`` is linear where the jaw turns (the
displacement that fits the turn best over the angles of speech, scaled to
:data:`JAW_OPEN_RADIANS` at weight 1), and ``tongueOut`` moves the lower lip down and
forward as a tongue over it would: the head has no tongue. ``mouthClose`` closes the
lips of a ``jawOpen`` face, as ARKit's does: alone it pushes the lips into each other.

Solve. :meth:`ArkitShapes.solve` turns any motion of the head ``[T, V, 3]`` into
weights ``[T, 52]`` in [0, 1]: bounded least squares over the moving vertices of the
face (mouth, jaw, eyes, brows, cheeks, nose), with a small penalty on the change of each
weight from frame to frame, solved for the whole sequence at once by ADMM on the normal
equations, which are diagonalised once (the shapes' Gram matrix by its eigenvectors, time
by the cosine transform), so an iteration costs two small matrix products a frame.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.mesh.head import _smoothstep
from voxmesh.mesh.rig import HeadRig, _Fields

__all__ = [
    "ARKIT_NAMES", "LIVE_LINK_NAMES", "ARKIT_GROUPS", "JAW_OPEN_RADIANS", "ArkitShapes", "ArkitFit", "NameMatch",
    "arkit_shapes", "match_names", "solve", "group_of", "OCULUS_VISEMES", "RPM_VISEMES",
]

# The 52 names in Live Link Face's CSV order (Apple's lowerCamel spelling).
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight",
    "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
# The same order as Live Link Face writes the names (its CSV header).
LIVE_LINK_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
# Shape groups, for scores per group (tongueOut counts with the mouth).
ARKIT_GROUPS: dict[str, tuple[str, ...]] = {
    "jaw": tuple(n for n in ARKIT_NAMES if n.startswith("jaw")),
    "mouth": tuple(n for n in ARKIT_NAMES if n.startswith(("mouth", "tongue"))),
    "eyes": tuple(n for n in ARKIT_NAMES if n.startswith("eye")),
    "brows": tuple(n for n in ARKIT_NAMES if n.startswith("brow")),
    "cheeks_nose": tuple(n for n in ARKIT_NAMES if n.startswith(("cheek", "nose"))),
}

# jawOpen at weight 1 turns the jaw by this much (25 degrees, the top of speech's range).
JAW_OPEN_RADIANS = 0.44
# The linear jawOpen shape is fitted to the jaw's turn over 0..this angle (speech's range).
JAW_FIT_RADIANS = 0.3
# eyeLook* turn the eyeball by this much at weight 1.
EYE_LOOK_RADIANS = 0.44
# A vertex takes part in the solve when some shape moves it by more than this (metres).
SOLVE_MIN_MOTION = 1e-4
# The default penalty on a weight's change from one frame to the next, relative to the
# squared motion of that shape (0 solves each frame on its own).
DEFAULT_SMOOTHING = 0.02
# The default penalty on each weight's size, relative to the squared motion of its shape:
# it keeps pairs that pull against each other (jawLeft with jawRight) from both rising to
# explain what neither means.
DEFAULT_RIDGE = 0.002
# Pairs of shapes that pull against each other. Both at once cancel out on the head but not
# on an avatar, where they would show as a twitch; the solve's ``antagonists`` penalty
# (on the square of each pair's sum) keeps them from rising together.
ANTAGONISTS: tuple[tuple[str, str], ...] = (
    ("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"), ("browDownLeft", "browInnerUp"),
    ("browDownRight", "browInnerUp"),
    *((f"eyeLookIn{s}", f"eyeLookOut{s}") for s in ("Left", "Right")),
    *((f"eyeLookUp{s}", f"eyeLookDown{s}") for s in ("Left", "Right")),
    *((f"eyeWide{s}", f"eyeBlink{s}") for s in ("Left", "Right")),
    *((f"mouthSmile{s}", f"mouthFrown{s}") for s in ("Left", "Right")),
    *((f"browDown{s}", f"browOuterUp{s}") for s in ("Left", "Right")),
)
DEFAULT_ANTAGONISTS = 0.1
# Frames a block where the motion is read (bounds the memory of a long sequence).
_BLOCK = 1024

# The 15 visemes of Oculus (Meta) LipSync, in its order, and Ready Player Me's names for them.
OCULUS_VISEMES: tuple[str, ...] = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih",
                                   "oh", "ou")
RPM_VISEMES: tuple[str, ...] = tuple("viseme_" + {"ih": "I", "oh": "O", "ou": "U"}.get(v, v) for v in OCULUS_VISEMES)
# Which pose of the rig each viseme is matched against (the rig's viseme class and the
# jaw opening, in degrees, it has in speech); DD, SS and nn share the alveolar pose, as
# the lips and jaw hardly tell them apart.
VISEME_POSES: dict[str, tuple[str, float]] = {
    "PP": ("bilabial", 1.0), "FF": ("labiodental", 4.0), "TH": ("dental", 5.0), "DD": ("alveolar", 4.0),
    "kk": ("velar", 6.0), "CH": ("postalveolar", 4.0), "SS": ("alveolar", 4.0), "nn": ("alveolar", 4.0),
    "RR": ("r", 4.0), "aa": ("open_vowel", 13.0), "E": ("mid_vowel", 8.0), "ih": ("close_vowel", 4.0),
    "oh": ("rounded_vowel", 7.0), "ou": ("w", 3.0),
}
# Ridge on the viseme match: keeps weights of look-alike visemes from flickering.
VISEME_RIDGE = 0.02


# ---- names ---------------------------------------------------------------------------------

def _key(name: str) -> str:
    """A name as matched: the part after a namespace ('blendShape1.jawOpen', 'head:jawOpen'),
    lower case, without separators; a trailing '_L'/'_R' reads as Left/Right."""
    tail = re.split(r"[.:|/]", str(name).strip())[-1]
    side = re.search(r"[_\-. ]([LlRr])$", tail)
    if side:
        tail = tail[: side.start()] + ("left" if side.group(1) in "Ll" else "right")
    return re.sub(r"[^0-9a-z]", "", tail.lower())


_KEYS = {_key(n): i for i, n in enumerate(ARKIT_NAMES)}


@dataclass
class NameMatch:
    """How a list of names pairs with :data:`ARKIT_NAMES`: ``index`` maps each given
    name that is an ARKit name to its position in the canonical order; ``unknown`` lists
    the given names that are none; ``missing`` the ARKit names none of them is."""

    index: dict[str, int]
    unknown: list[str]
    missing: list[str]

    @property
    def found(self) -> list[str]:
        """The canonical names found, in the canonical order."""
        return [ARKIT_NAMES[i] for i in sorted(set(self.index.values()))]


def match_names(names: Iterable[str]) -> NameMatch:
    """Pair ``names`` with the 52 ARKit names whatever their case or separators."""
    index: dict[str, int] = {}
    unknown: list[str] = []
    for name in names:
        position = _KEYS.get(_key(name))
        if position is None:
            unknown.append(str(name))
        else:
            index[str(name)] = position
    hit = set(index.values())
    return NameMatch(index, unknown, [n for i, n in enumerate(ARKIT_NAMES) if i not in hit])


def arkit_index(name: str) -> int:
    """The position of one ARKit name in the canonical order (any case)."""
    position = _KEYS.get(_key(name))
    if position is None:
        raise VoxmeshError(f"'{name}' is not one of ARKit's 52 blendshape names (such as jawOpen or eyeBlinkLeft).")
    return position


def group_of(name: str) -> str:
    """The group (a key of :data:`ARKIT_GROUPS`) of an ARKit name."""
    canonical = ARKIT_NAMES[arkit_index(name)]
    return next(g for g, members in ARKIT_GROUPS.items() if canonical in members)


# ---- shapes --------------------------------------------------------------------------------

class _ShapeFields:
    """The 52 displacement fields ``[V, 3]`` (metres at weight 1) of one rig."""

    def __init__(self, rig: HeadRig) -> None:
        self.rig = rig
        self.f = f = _Fields(rig)
        self.v = rig._v
        self.neutral = rig.template.vertices
        x = f.x
        # The subject's left (+x) and right halves: sharp between the eyes, smooth across
        # the mouth, so each Left + Right pair adds up to the symmetric field.
        self.eye_side = {"Left": _smoothstep(-0.006, 0.006, x), "Right": 1.0 - _smoothstep(-0.006, 0.006, x)}
        self.mouth_side = {"Left": _smoothstep(-0.014, 0.014, x), "Right": 1.0 - _smoothstep(-0.014, 0.014, x)}
        self.front = _smoothstep(0.01, 0.04, f.z)
        self._no_visemes = np.zeros((1, rig.n_visemes), np.float32)
        self._no_expressions = np.zeros((1, rig.n_expressions), np.float32)
        self.jaw_open = self._jaw_open()

    # ---- helpers ----
    def posed(self, jaw: float = 0.0, blink: float = 0.0) -> np.ndarray:
        out = self.rig.pose(self.neutral, [jaw], self._no_visemes, self._no_expressions, [blink])[0]
        return out.astype(np.float64) - self.neutral

    def _jaw_open(self) -> np.ndarray:
        """The linear shape that fits the jaw's turn best over 0..JAW_FIT_RADIANS (least
        squares over the angle, weight angle / JAW_OPEN_RADIANS)."""
        angles = np.linspace(0.0, JAW_FIT_RADIANS, 13)[1:]
        turns = np.stack([self.posed(jaw=a) for a in angles])
        return JAW_OPEN_RADIANS * np.tensordot(angles, turns, axes=1) / float(np.sum(angles ** 2))

    def upper_half(self, d: np.ndarray) -> np.ndarray:
        return d * self.f.upper[:, None]

    def lower_half(self, d: np.ndarray) -> np.ndarray:
        return d * (1.0 - self.f.upper)[:, None]

    def upper_lip_tuck(self) -> np.ndarray:
        """The upper lip rolls in and down (its rim most), as lower_lip_tuck does below."""
        f = self.f
        d = f.zero()
        w = f.upper * f.vertical_red * (0.35 + 0.65 * f.profile) * f.lateral
        roll = np.exp(-((f.y - f.ym) / 0.006) ** 2)
        d[:, 2] = -(0.4 + 0.6 * roll) * w
        d[:, 1] = -0.3 * roll * w
        return f._clean(d)

    def mouth_shift(self, sign: float) -> np.ndarray:
        """The lips and the skin around them sideways by 1 toward ``sign`` (+1: +x),
        fading over the cheeks; the corner they move toward goes back along the teeth."""
        f = self.f
        d = f.zero()
        w = f.lateral * f.vertical
        d[:, 0] = sign * w
        d[:, 2] = -0.4 * w * np.clip(sign * f.s, 0.0, 1.0)
        return f._clean(d)

    def jaw_follow(self) -> np.ndarray:
        """How much each vertex follows a slide of the jaw: the rig's jaw weights, fading
        toward the hinge, where the skin over the joint hardly moves."""
        hinge_z = self.rig.hinge[2]
        return self.rig.jaw_weight * _smoothstep(hinge_z - 0.01, hinge_z + 0.05, self.f.z)

    def jaw_translate(self, direction) -> np.ndarray:
        d = self.jaw_follow()[:, None] * np.asarray(direction, float)[None, :]
        d[self.f.eyeballs] = 0.0
        return d

    def jaw_sideways(self, sign: float) -> np.ndarray:
        """The jaw turns about the condyle on the side it moves to (a vertical axis by
        that ear; the other condyle swings forward) so the chin moves by 1 toward
        ``sign`` (+1: +x)."""
        v = self.v
        pivot_x, pivot_z = sign * 0.05, self.rig.hinge[2]
        chin_z = 0.09
        rate = 1.0 / (chin_z - pivot_z)  # radians a metre of chin motion
        d = np.zeros_like(v)
        d[:, 0] = sign * rate * (v[:, 2] - pivot_z)
        d[:, 2] = -sign * rate * (v[:, 0] - pivot_x)
        d *= self.jaw_follow()[:, None]
        d[self.f.eyeballs] = 0.0
        return d

    def corner_pull_down(self) -> np.ndarray:
        """The mouth corners and the skin below them down (and a little out) by 1."""
        f = self.f
        g = np.exp(-(((np.abs(f.x) - f.a) ** 2 + (f.y - f.ym + 0.005) ** 2) / (2.0 * 0.012 ** 2))) * f.follow * f.front
        d = f.zero()
        d[:, 1] = -g
        d[:, 0] = 0.2 * np.sign(f.x) * g
        return f._clean(d)

    def lower_lip_sides_down(self) -> np.ndarray:
        """The lower lip down by 1 toward the corners (none in the middle)."""
        f = self.f
        d = f.zero()
        d[:, 1] = -(1.0 - f.upper) * f.vertical * f.lateral * np.clip(np.abs(f.s), 0.0, 1.0) ** 1.5
        return f._clean(d)

    def upper_lip_shrug(self) -> np.ndarray:
        """The upper lip and the skin up to the nose forward and a little up."""
        f = self.f
        d = f.zero()
        w = f.upper * f.vertical * f.lateral * (0.5 + 0.5 * f.profile)
        d[:, 2] = w
        d[:, 1] = 0.4 * w
        return f._clean(d)

    def chin_raise(self) -> np.ndarray:
        """The chin boss up and forward (the mentalis), by 1 at its centre."""
        f = self.f
        g = f.gauss((0.0, f.ym - 0.03, 0.09), (0.016, 0.012, 0.03), mirror=False) * f.front
        d = f.zero()
        d[:, 1] = g
        d[:, 2] = 0.6 * g
        return f._clean(d)

    def tongue_out(self) -> np.ndarray:
        """No tongue: the floor of the mouth comes forward to the lips and the lower lip
        goes down and forward, as over a tongue (by 1 at the lip)."""
        f, rig = self.f, self.rig
        d = 0.8 * self.lower_half(f.lips_part()) + 0.6 * self.lower_half(f.protrude())
        floor = rig.template.regions["inner_mouth_lower"]
        depth = np.clip(np.interp(f.x[floor], rig._rim_x, rig._rim_z) - f.z[floor], 0.0, None)
        d[floor, 2] += 1.2 * np.exp(-((depth / 0.012) ** 2))
        d[floor, 1] += -0.4 * np.exp(-((depth / 0.012) ** 2))
        return f._clean(d)

    def cheek_puff(self) -> np.ndarray:
        f = self.f
        g = f.gauss((0.037, f.ym + 0.003, 0.06), (0.013, 0.016, 0.03)) * f.front
        return f._clean(0.008 * f.normals * g[:, None] + 0.0008 * f.protrude())

    def eye_turn(self, side: str, up: float, outward: float) -> np.ndarray:
        """The eyeball of one side turned up (+) and out, away from the nose (+), radians."""
        rig = self.rig
        balls = rig.template.regions["eyeballs"]
        sign = 1.0 if side == "Left" else -1.0
        ball = balls[np.sign(self.v[balls, 0]) == sign]
        centre = rig.eye_centers[1 if side == "Left" else 0]
        q = self.v[ball] - centre
        yaw = sign * outward
        cu, su, cy, sy = np.cos(up), np.sin(up), np.cos(yaw), np.sin(yaw)
        # pitch about x (the front turns up), then yaw about y (the front turns to +x for +yaw)
        y1, z1 = q[:, 1] * cu + q[:, 2] * su, -q[:, 1] * su + q[:, 2] * cu
        x2, z2 = q[:, 0] * cy + z1 * sy, -q[:, 0] * sy + z1 * cy
        d = np.zeros_like(self.v)
        d[ball] = np.stack([x2, y1, z2], axis=1) - q
        return d

    # ---- the 52 ----
    def shape(self, name: str) -> np.ndarray:
        """Shape ``name`` at weight 1. Fields other than the jaw's end at the front of the
        face: the rig's mouth fields reach round to the back of the head at mouth height."""
        d = self._shape(name)
        if not name.startswith("jaw"):
            d = d * self.front[:, None]
        return d

    def _shape(self, name: str) -> np.ndarray:
        f = self.f
        for side in ("Left", "Right"):
            if name.endswith(side):
                base = name[: -len(side)]
                if base.startswith(("eye", "brow")) or base in ("cheekSquint", "noseSneer"):
                    weight = self.eye_side[side] if base.startswith(("eye", "brow")) else self.mouth_side[side]
                    if base.startswith("eyeLook"):
                        return self._eye_look(base, side)
                    return self._sided(base, side) * weight[:, None]
                if base in ("jaw", "mouth"):
                    break  # jawLeft/mouthLeft: the whole jaw or mouth moves to one side
                return self._sided(base, side) * self.mouth_side[side][:, None]
        if name == "jawOpen":
            return self.jaw_open.copy()
        if name == "jawForward":  # the condyles slide forward and down the eminence
            return self.jaw_translate((0.0, -0.0015, 0.006))
        if name in ("jawLeft", "jawRight"):
            return 0.006 * self.jaw_sideways(1.0 if name == "jawLeft" else -1.0)
        if name in ("mouthLeft", "mouthRight"):
            return 0.006 * self.mouth_shift(1.0 if name == "mouthLeft" else -1.0)
        if name == "mouthClose":
            return self.rig.lip_seal(self.neutral + self.jaw_open)
        if name == "mouthFunnel":
            return -0.004 * f.spread() + 0.003 * f.protrude() + 0.004 * f.lips_funnel() + 0.0025 * f.lips_part()
        if name == "mouthPucker":
            return -0.008 * f.spread() + 0.006 * f.protrude()
        if name == "mouthRollLower":
            return 0.005 * f.lower_lip_tuck()
        if name == "mouthRollUpper":
            return 0.004 * self.upper_lip_tuck()
        if name == "mouthShrugLower":
            return 0.003 * f.lower_lip_pout() + 0.003 * self.chin_raise()
        if name == "mouthShrugUpper":
            return 0.003 * self.upper_lip_shrug()
        if name == "browInnerUp":
            return f.brows(0.006, 0.0)
        if name == "cheekPuff":
            return self.cheek_puff()
        if name == "tongueOut":
            return 0.005 * self.tongue_out()
        raise KeyError(name)

    def _sided(self, base: str, side: str) -> np.ndarray:
        """The symmetric field of a Left/Right pair (the side weight is applied after)."""
        f = self.f
        if base == "eyeBlink":
            return self.posed(blink=1.0)
        if base == "eyeSquint":
            return f.eyelids(0.0, 0.3) + 0.0015 * f.cheeks_raise()
        if base == "eyeWide":
            return f.eyelids(0.34, -0.05)
        if base == "mouthSmile":
            return 0.007 * f.corners_up() + 0.003 * f.spread() + 0.0015 * f.corners_back()
        if base == "mouthFrown":
            return 0.005 * self.corner_pull_down()
        if base == "mouthDimple":
            return 0.004 * f.corners_back() + 0.001 * f.spread()
        if base == "mouthStretch":
            return 0.005 * f.spread() - 0.0015 * f.corners_up() + 0.0025 * self.lower_lip_sides_down()
        if base == "mouthPress":
            return 0.003 * f.lips_press()
        if base == "mouthLowerDown":
            return 0.006 * self.lower_half(f.lips_part())
        if base == "mouthUpperUp":
            return 0.006 * self.upper_half(f.lips_part()) + 0.002 * f.upper_lip_raise()
        if base == "browDown":
            return f.brows(-0.005, -0.004, 0.003)
        if base == "browOuterUp":
            return f.brows(0.0, 0.006)
        if base == "cheekSquint":
            return 0.005 * f.cheeks_raise() + f.eyelids(0.0, 0.12)
        if base == "noseSneer":
            return 0.004 * f.nose_wrinkle() + 0.0015 * f.nostrils_flare() + 0.0012 * f.upper_lip_raise()
        raise KeyError(base + side)

    def _eye_look(self, base: str, side: str) -> np.ndarray:
        """The eyeball turns; the lids follow a vertical gaze a little."""
        a = EYE_LOOK_RADIANS
        lids = self.eye_side[side][:, None]
        if base == "eyeLookUp":
            return self.eye_turn(side, a, 0.0) + self.f.eyelids(0.15, 0.0) * lids
        if base == "eyeLookDown":
            return self.eye_turn(side, -a, 0.0) + 0.3 * self.posed(blink=1.0) * lids
        if base == "eyeLookOut":
            return self.eye_turn(side, 0.0, a)
        if base == "eyeLookIn":
            return self.eye_turn(side, 0.0, -a)
        raise KeyError(base + side)


@dataclass
class ArkitFit:
    """Weights solved from a motion and how well they rebuild it.

    ``weights`` float32 ``[T, 52]`` in [0, 1] (order :data:`ARKIT_NAMES`);
    ``vertex_rms_mm`` the root-mean-square distance between the motion and its rebuild
    over the solved vertices (mouth, jaw, eyes, brows, cheeks, nose), ``lip_rms_mm`` and
    ``lip_max_mm`` over the lips; ``explained`` and ``lip_explained`` the share of the
    squared displacement from the neutral that the rebuild explains (1 - sum |residual|^2
    / sum |displacement|^2, uncentred; 1.0 for a still face); ``iterations`` of the solver."""

    weights: np.ndarray
    vertex_rms_mm: float
    lip_rms_mm: float
    lip_max_mm: float
    explained: float
    lip_explained: float
    iterations: int
    names: tuple[str, ...] = field(default=ARKIT_NAMES)

    def summary(self) -> dict:
        """The scores (not the weights), for reports."""
        return {k: getattr(self, k) for k in ("vertex_rms_mm", "lip_rms_mm", "lip_max_mm", "explained",
                                              "lip_explained", "iterations")}


class ArkitShapes:
    """The 52 ARKit blendshapes of the procedural head and the solve to their weights.

    ``basis`` float32 ``[52, V, 3]`` (metres at weight 1, order :data:`ARKIT_NAMES`);
    ``neutral`` ``[V, 3]`` (the head's); ``solve_vertices`` the vertices the solve
    fits (those some shape moves by more than 0.1 mm); ``template`` the head.
    """

    names: tuple[str, ...] = ARKIT_NAMES

    def __init__(self, rig: HeadRig | None = None) -> None:
        self.rig = rig if rig is not None else HeadRig()
        self.template = self.rig.template
        self.neutral = self.template.vertices
        fields = _ShapeFields(self.rig)
        basis = np.stack([fields.shape(n) for n in ARKIT_NAMES])
        self.basis = np.ascontiguousarray(basis, dtype=np.float32)
        self.num_vertices = self.template.num_vertices
        k = len(ARKIT_NAMES)
        motion = np.linalg.norm(basis, axis=2).max(axis=0)
        self.solve_vertices = np.nonzero(motion > SOLVE_MIN_MOTION)[0]
        mask = np.zeros(self.num_vertices, bool)
        mask[self.solve_vertices] = True
        # The solve's matrix over the whole frame (zero rows off the solved vertices, so a
        # frame is used as it lies in memory): shape k's motion, flattened, scaled to 1.
        a = np.where(mask[None, :, None], basis, 0.0).reshape(k, -1).T  # [V*3, 52]
        gram = a.T @ a
        self._scale = np.sqrt(np.diag(gram))  # each shape's motion (m), so scaled weights are comparable
        self._a = np.ascontiguousarray(a / self._scale[None, :], dtype=np.float32)
        self._mask = np.repeat(mask, 3).astype(np.float32)
        lips = np.intersect1d(self.template.region("lips"), self.solve_vertices)
        self._lip_columns = (3 * lips[:, None] + np.arange(3)[None, :]).reshape(-1)
        self._a_lips_t = np.ascontiguousarray(self._a[self._lip_columns].T)  # [52, n_lips*3]
        self._gram = gram / np.outer(self._scale, self._scale)
        self._pairs = np.zeros((k, k))  # sum over ANTAGONISTS of (e_a + e_b)(e_a + e_b)'
        for a, b in ANTAGONISTS:
            both = np.zeros(k)
            both[[ARKIT_NAMES.index(a), ARKIT_NAMES.index(b)]] = 1.0
            self._pairs += np.outer(both, both)

    @functools.lru_cache(maxsize=4)
    def _spectrum(self, antagonists: float) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues and vectors of the scaled normal matrix with the pair penalty."""
        values, vectors = np.linalg.eigh(self._gram + antagonists * self._pairs)
        return np.maximum(values, 0.0), vectors

    # ---- visemes ----
    @functools.cached_property
    def viseme_prototypes(self) -> np.ndarray:
        """The jaw and mouth ARKit weights of each pose of :data:`VISEME_POSES`, float64
        ``[len(poses), n_mouth]`` (columns: the jaw and mouth groups), one row a pose."""
        rig = self.rig
        poses = sorted(set(VISEME_POSES.values()))
        visemes = np.zeros((len(poses), rig.n_visemes), np.float32)
        for row, (name, _) in enumerate(poses):
            visemes[row, rig.viseme_names.index(name)] = 1.0
        jaw = np.radians([degrees for _, degrees in poses])
        faces = rig.pose(self.neutral, jaw, visemes, np.zeros((len(poses), rig.n_expressions)), np.zeros(len(poses)))
        weights = self.solve(faces, smoothing=0.0, tolerance=1e-6, max_iterations=5000).weights
        return weights[:, _mouth_columns()].astype(np.float64)

    def visemes(self, weights: np.ndarray) -> np.ndarray:
        """The 15 Oculus visemes (order :data:`OCULUS_VISEMES`) of ARKit weights ``[T, 52]``:
        float32 ``[T, 15]`` in [0, 1], summing to 1 a frame. Each frame's jaw and mouth
        weights are matched against the ARKit weights of the rig's pose for each viseme
        (non-negative least squares with a small ridge); visemes that share a pose share
        its weight evenly; when the match adds up to more than 1 it is scaled to 1, and
        ``sil`` takes the rest."""
        from scipy.optimize import nnls

        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[1] != len(ARKIT_NAMES):
            raise VoxmeshError(f"ARKit weights have shape {weights.shape}; expected [frames, {len(ARKIT_NAMES)}].")
        poses = sorted(set(VISEME_POSES.values()))
        prototypes = self.viseme_prototypes  # [P, M]
        system = np.concatenate([prototypes.T, np.sqrt(VISEME_RIDGE) * np.eye(len(poses))])
        padding = np.zeros(len(poses))
        share = np.zeros((len(poses), len(OCULUS_VISEMES)))  # pose -> visemes, split evenly
        for viseme, pose in VISEME_POSES.items():
            share[poses.index(pose), OCULUS_VISEMES.index(viseme)] = 1.0
        share /= share.sum(axis=1, keepdims=True)
        mouth = weights[:, _mouth_columns()]
        matched = np.stack([nnls(system, np.concatenate([row, padding]))[0] for row in mouth]) if len(mouth) \
            else np.zeros((0, len(poses)))
        total = matched.sum(axis=1, keepdims=True)
        matched = matched / np.maximum(total, 1.0)
        out = matched @ share
        out[:, 0] = np.clip(1.0 - matched.sum(axis=1), 0.0, 1.0)
        return out.astype(np.float32)

    # ---- rebuild ----
    def rebuild(self, weights: np.ndarray, neutral: np.ndarray | None = None) -> np.ndarray:
        """The face of each frame of ``weights [T, 52]``: float32 ``[T, V, 3]`` =
        neutral + weights @ basis."""
        weights = np.asarray(weights, dtype=np.float32)
        if weights.ndim != 2 or weights.shape[1] != len(ARKIT_NAMES):
            raise VoxmeshError(f"ARKit weights have shape {weights.shape}; expected [frames, {len(ARKIT_NAMES)}].")
        base = self._neutral(neutral)
        out = (weights @ self.basis.reshape(len(ARKIT_NAMES), -1)).reshape(len(weights), self.num_vertices, 3)
        return out + base[None]

    def _neutral(self, neutral: np.ndarray | None) -> np.ndarray:
        if neutral is None:
            return self.neutral
        neutral = np.asarray(neutral, dtype=np.float32)
        if neutral.shape != (self.num_vertices, 3):
            raise VoxmeshError(f"The neutral face has shape {tuple(neutral.shape)}; ARKit weights are solved on the "
                               f"procedural head, [{self.num_vertices}, 3].")
        return neutral

    # ---- solve ----
    def solve(self, vertices: np.ndarray, neutral: np.ndarray | None = None, *,
              smoothing: float = DEFAULT_SMOOTHING, ridge: float = DEFAULT_RIDGE,
              antagonists: float = DEFAULT_ANTAGONISTS, tolerance: float = 1e-4, max_iterations: int = 1000) -> ArkitFit:
        """Weights in [0, 1] for a motion of the head ``vertices [T, V, 3]`` (or
        ``[T, V*3]``) on ``neutral [V, 3]`` (default: the head's own).

        Minimises, over the whole sequence, sum_t |A w_t - d_t|^2 + smoothing * sum_t
        sum_k |shape k|^2 (w_tk - w_(t-1)k)^2 + ridge * sum_t sum_k |shape k|^2 w_tk^2 +
        antagonists * sum_t sum_(a, b) (|shape a| w_ta + |shape b| w_tb)^2 (the pairs of
        :data:`ANTAGONISTS`) with 0 <= w <= 1, where d_t is the frame's displacement from
        the neutral over the solved vertices and A the shapes there. ``smoothing`` 0
        solves every frame on its own; all three 0 give the exact per-frame fit. ``tolerance``: the largest change
        of a weight between iterations (and the largest gap between the unbounded and
        bounded copies of ADMM) at which the solve stops."""
        vertices = np.asarray(vertices)
        size = self.num_vertices * 3
        if vertices.ndim == 3 and vertices.shape[1:] == (self.num_vertices, 3):
            vertices = vertices.reshape(len(vertices), size)
        if vertices.ndim != 2 or vertices.shape[1] != size:
            raise VoxmeshError(
                f"ARKit weights are solved on voxmesh's procedural head ({self.num_vertices} vertices); this motion "
                f"has shape {tuple(vertices.shape)}: animate with a model trained on the synthetic head.")
        for what, value, default in (("smoothing", smoothing, DEFAULT_SMOOTHING), ("ridge", ridge, DEFAULT_RIDGE),
                                     ("antagonists", antagonists, DEFAULT_ANTAGONISTS)):
            if not (np.isfinite(value) and value >= 0):
                raise VoxmeshError(f"ARKit {what} {value!r} must be 0 or more; {default} is the default.")
        base = self._neutral(neutral).reshape(-1)
        frames, k = len(vertices), len(ARKIT_NAMES)
        if frames == 0:
            return ArkitFit(np.zeros((0, k), np.float32), 0.0, 0.0, 0.0, 1.0, 1.0, 0)
        rhs = np.empty((frames, k), np.float64)
        motion_sq = np.empty(frames, np.float64)
        lips = np.empty((frames, len(self._lip_columns)), np.float32)
        for start in range(0, frames, _BLOCK):  # one pass over the motion, a block of frames at a time
            stop = min(frames, start + _BLOCK)
            d = np.asarray(vertices[start:stop], dtype=np.float32) - base[None]
            rhs[start:stop] = d @ self._a
            motion_sq[start:stop] = (d * d) @ self._mask
            lips[start:stop] = d[:, self._lip_columns]
        eigenvalues, eigenvectors = self._spectrum(float(antagonists))
        scaled, iterations = _box_admm(rhs, eigenvalues + float(ridge), eigenvectors, self._scale, float(smoothing),
                                       tolerance, max_iterations)
        weights = np.clip(scaled / self._scale[None, :], 0.0, 1.0).astype(np.float32)
        scaled = weights.astype(np.float64) * self._scale[None, :]
        # |d - A y|^2 = |d|^2 - 2 y.A'd + y'A'Ay, frame by frame, without rebuilding the faces.
        residual_sq = np.maximum(motion_sq - 2.0 * np.einsum("tk,tk->t", scaled, rhs)
                                 + np.einsum("tk,kj,tj->t", scaled, self._gram, scaled), 0.0)
        lip_residual = (lips - scaled.astype(np.float32) @ self._a_lips_t).reshape(frames, -1, 3)
        lip_distance_sq = np.einsum("tvc,tvc->tv", lip_residual, lip_residual)
        lip_total = float(np.einsum("tc,tc->", lips, lips))
        n_lips = lip_distance_sq.shape[1]
        return ArkitFit(
            weights=weights,
            vertex_rms_mm=1000.0 * float(np.sqrt(residual_sq.sum() / (frames * len(self.solve_vertices)))),
            lip_rms_mm=1000.0 * float(np.sqrt(lip_distance_sq.sum() / max(1, frames * n_lips))),
            lip_max_mm=1000.0 * float(np.sqrt(lip_distance_sq.max(initial=0.0))),
            explained=1.0 - float(residual_sq.sum() / motion_sq.sum()) if motion_sq.sum() > 0 else 1.0,
            lip_explained=1.0 - float(lip_distance_sq.sum()) / lip_total if lip_total > 0 else 1.0,
            iterations=iterations,
        )


def _box_admm(rhs: np.ndarray, eigenvalues: np.ndarray, eigenvectors: np.ndarray, upper: np.ndarray,
              smoothing: float, tolerance: float, max_iterations: int) -> tuple[np.ndarray, int]:
    """Minimise sum_t (1/2 y_t' G y_t - rhs_t' y_t) + smoothing/2 sum_t |y_t - y_(t-1)|^2
    subject to 0 <= y <= upper, for G = Q diag(eigenvalues) Q' (unit diagonal), by ADMM
    with over-relaxation and residual balancing. Returns y ``[T, K]`` and the iterations.

    The linear step y = (G + rho I + smoothing L)^-1 (rhs + rho w), with L the path
    Laplacian over time, is diagonal in the basis Q (shapes) times the cosine transform
    (time); without smoothing it is one product with a K x K matrix a frame."""
    from scipy.fft import dct, idct

    frames, k = rhs.shape
    coupled = smoothing > 0 and frames > 1
    q, q_t = eigenvectors, np.ascontiguousarray(eigenvectors.T)
    if coupled:
        time_eigen = 2.0 - 2.0 * np.cos(np.pi * np.arange(frames) / frames)  # of the path Laplacian
        base = eigenvalues[None, :] + smoothing * time_eigen[:, None]  # [T, K]
    else:
        base = eigenvalues[None, :]

    def spectral(r):
        r = r @ q
        return dct(r, type=2, norm="ortho", axis=0, overwrite_x=True) if coupled else r

    def from_spectral(s):
        s = idct(s, type=2, norm="ortho", axis=0, overwrite_x=True) if coupled else s
        return s @ q_t

    rhs_spectral = spectral(rhs)
    positive = eigenvalues[eigenvalues > 1e-9]
    # Half the geometric mean of the extreme eigenvalues: the fewest iterations on speech.
    rho = 0.5 * float(np.sqrt(positive.min() * positive.max())) if len(positive) else 1.0

    def linear_step(rho):
        """y0 = A^-1 rhs and the map w -> rho A^-1 w, for A = G + rho I (+ smoothing L)."""
        inverse = 1.0 / (base + rho)
        y0 = from_spectral(rhs_spectral * inverse)
        if coupled:
            return y0, lambda w, out: np.copyto(out, from_spectral(spectral(w) * (rho * inverse)))
        matrix = (q * (rho * inverse)) @ q_t  # rho Q diag(inverse) Q'
        return y0, lambda w, out: np.matmul(w, matrix, out=out)

    y0, step = linear_step(rho)
    z = np.clip(y0, 0.0, upper)
    u = np.zeros_like(z)
    y, y_hat, w, z_next, z_prev = (np.empty_like(z) for _ in range(5))
    alpha = 1.6
    tol = tolerance * upper[None, :]  # in weight units
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        np.subtract(z, u, out=w)
        step(w, y)
        y += y0
        np.multiply(y, alpha, out=y_hat)
        np.multiply(z, 1.0 - alpha, out=w)
        y_hat += w
        np.add(y_hat, u, out=z_next)
        np.minimum(z_next, upper, out=z_next)
        np.maximum(z_next, 0.0, out=z_next)
        u += y_hat
        u -= z_next
        z_prev, z, z_next = z, z_next, z_prev
        if iterations % 5 == 0:
            primal = float((np.abs(y - z) / tol).max())
            dual = float((np.abs(z - z_prev) / tol).max())
            if primal < 1.0 and dual < 1.0:
                break
            # Residual balancing: rho up when the copies disagree, down when z still moves.
            if primal > 10.0 * dual or dual > 10.0 * primal:
                factor = 2.0 if primal > dual else 0.5
                rho *= factor
                u /= factor
                y0, step = linear_step(rho)
    return z, iterations


def _mouth_columns() -> list[int]:
    return [ARKIT_NAMES.index(n) for n in ARKIT_GROUPS["jaw"] + ARKIT_GROUPS["mouth"]]


@functools.lru_cache(maxsize=1)
def arkit_shapes() -> ArkitShapes:
    """The head's 52 shapes, built once a process (about two seconds)."""
    return ArkitShapes()


def solve(vertices: np.ndarray, neutral: np.ndarray | None = None, **options) -> ArkitFit:
    """ARKit weights ``[T, 52]`` of a motion of the procedural head ``[T, V, 3]``:
    :meth:`ArkitShapes.solve` on the head's shapes (``arkit_shapes()``)."""
    return arkit_shapes().solve(vertices, neutral, **options)

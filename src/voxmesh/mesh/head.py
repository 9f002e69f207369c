"""A procedural human head, built by code from facial proportions (no mesh file).

How it is made:

1. An implicit head: a smooth union of ellipsoids and rounded cones placed at adult
   proportions (skull, forehead, brow ridge, eye sockets with closed lids, nose, cheeks,
   cheekbones, jaw, chin, ears, neck).
2. A closed grid of quads over longitude and latitude around the eye line. Every grid
   ray is traced onto the implicit surface from outside. Columns are packed over the
   eyes and the mouth; within each column the rows are spread evenly by arc length (so
   the nose underside, the chin and the neck front are not stretched), with anchor rows
   on the level lip line, on the vermilion borders and on the eye line.
3. The mouth and the eyes are cut along grid rows: the rim vertices are duplicated so
   the upper and lower lips (lids) are separate rims that touch at rest.
4. Smooth analytic displacements shape the lips (bulge, cupid's bow, philtrum, and the
   roll inward to the contact line) and open the lids by turning them about the eyeball.
5. A dark inner-mouth pocket closes the mouth behind the lips; teeth and eyeballs are
   small separate closed components.

Coordinates: metres, y up, z toward the viewer, origin between the ears; about 0.23 m
from crown to chin (like FLAME). The subject's left is +x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voxmesh.mesh.template import Template

__all__ = ["build_head", "display_colors", "jaw_weights"]

# ---- proportions (metres) ---------------------------------------------------------------
EYE_Y = 0.025  # eye line: half-way between crown (0.14) and chin (-0.092)
PUPIL_X = 0.0315  # half of a 63 mm distance between pupils
EYE_Z = 0.0755  # eyeball centre depth: the cornea sits 7 mm behind the brow ridge
EYEBALL_RADIUS = 0.0125
LID_RADII = (0.0147, 0.0133, 0.0133)  # closed-lid skin over the eyeball, long sideways
NOSE_BOTTOM_Y = -0.025  # 50 mm below the eye line
MOUTH_Y = -0.047  # a third of the way from the nose bottom to the chin
MOUTH_HALF_WIDTH = 0.0245  # about the distance between the pupils, in all
CHIN_Y = -0.092
NECK_BOTTOM_Y = -0.15
JAW_HINGE = (0.0, -0.024, 0.006)  # just in front of the ears, at nose-bottom level
NOSTRIL_CENTER = (0.0058, -0.0232, 0.0995)
NOSTRIL_RADII = (0.0026, 0.0022, 0.0048)

# Lips: red heights at the middle of the mouth, how far each bulges forward, and how
# many grid rows lie between the lip line and each vermilion border.
UPPER_LIP_HEIGHT = 0.0078
LOWER_LIP_HEIGHT = 0.0098
UPPER_LIP_BULGE = 0.0031
LOWER_LIP_BULGE = 0.0034
UPPER_LIP_ROWS = 4
LOWER_LIP_ROWS = 5
# Eyelids: how far the rims turn open from the closed-lid line at mid-eye (radians).
UPPER_LID_ANGLE = 0.40
LOWER_LID_ANGLE = 0.40

# Rays are traced inward from this distance from their start on the vertical axis.
_RAY_START = 0.26


def _smoothstep(e0: float, e1: float, x) -> np.ndarray:
    """0 below ``e0``, 1 beyond ``e1``, a smooth cubic between (either order)."""
    t = np.clip((np.asarray(x, dtype=np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# ---- implicit surface ---------------------------------------------------------------------
# Points come as three 1-D arrays (x, y, z); distances are approximate near the surface,
# which is all sphere tracing needs.

def _ellipsoid(x, y, z, c, r):
    """Signed distance to an axis-aligned ellipsoid (a first-order approximation)."""
    ax, ay, az = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    k0 = np.sqrt(ax * ax + ay * ay + az * az)
    k1 = np.sqrt((ax / r[0]) ** 2 + (ay / r[1]) ** 2 + (az / r[2]) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _ellipsoid_tilted(x, y, z, c, r, pitch=0.0, yaw=0.0):
    """An ellipsoid turned by ``yaw`` (about y) and ``pitch`` (about x), radians."""
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    if yaw:
        cw, sw = math.cos(yaw), math.sin(yaw)
        dx, dz = cw * dx - sw * dz, sw * dx + cw * dz
    if pitch:
        cp, sp = math.cos(pitch), math.sin(pitch)
        dy, dz = cp * dy + sp * dz, -sp * dy + cp * dz
    return _ellipsoid(dx, dy, dz, (0.0, 0.0, 0.0), r)


def _round_cone(x, y, z, a, b, ra, rb):
    """Signed distance to a capsule whose radius goes from ``ra`` at ``a`` to ``rb`` at ``b``."""
    a = np.asarray(a, dtype=np.float64)
    ba = np.asarray(b, dtype=np.float64) - a
    l2 = float(ba @ ba)
    rr = ra - rb
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    px, py, pz = x - a[0], y - a[1], z - a[2]
    along = px * ba[0] + py * ba[1] + pz * ba[2]
    past = along - l2
    qx, qy, qz = px * l2 - ba[0] * along, py * l2 - ba[1] * along, pz * l2 - ba[2] * along
    x2 = qx * qx + qy * qy + qz * qz
    y2 = along * along * l2
    z2 = past * past * l2
    k = math.copysign(1.0, rr) * rr * rr * x2
    d_side = (np.sqrt(np.maximum(x2 * a2 * il2, 0.0)) + along * rr) * il2 - ra
    d_b = np.sqrt(x2 + z2) * il2 - rb
    d_a = np.sqrt(x2 + y2) * il2 - ra
    return np.where(np.sign(past) * a2 * z2 > k, d_b, np.where(np.sign(along) * a2 * y2 < k, d_a, d_side))


def _smin(a, b, k):
    """Smooth union (polynomial smooth minimum) with blend radius ``k``."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def _smax(a, b, k):
    """Smooth intersection; ``_smax(d, -b, k)`` carves ``b`` out of ``d``."""
    return -_smin(-a, -b, k)


def _head_sdf(x, y, z):
    """Signed distance (metres) to the head without lips or eye openings.

    The lids are closed skin over the eyeballs; the mouth region is the smooth muzzle
    over the dental arches (the lips are displacements added later). Left and right
    features are evaluated at x and -x and blended with each other first, which keeps
    the field exactly symmetric and smooth across the midline.
    """

    def add(d, prim, k):
        return _smin(d, _smin(prim(x), prim(-x), k), k)

    def carve(d, prim, k):
        return _smax(d, -_smin(prim(x), prim(-x), k), k)

    # Skull: a long ellipsoid, a fuller vault behind, and the forehead.
    d = _ellipsoid(x, y, z, (0.0, 0.045, -0.012), (0.073, 0.091, 0.094))
    d = _smin(d, _ellipsoid(x, y, z, (0.0, 0.070, -0.022), (0.069, 0.064, 0.076)), 0.02)
    d = _smin(d, _ellipsoid(x, y, z, (0.0, 0.052, 0.018), (0.060, 0.068, 0.080)), 0.03)
    # Midface mass and cheekbones.
    d = _smin(d, _ellipsoid(x, y, z, (0.0, -0.002, 0.028), (0.060, 0.052, 0.060)), 0.025)
    d = add(d, lambda u: _ellipsoid_tilted(u, y, z, (0.047, 0.004, 0.050), (0.021, 0.013, 0.026), yaw=0.5), 0.02)
    # Soft tissue: cheeks over the teeth, under the eyes, and over the cheek hollow.
    d = add(d, lambda u: _ellipsoid(u, y, z, (0.033, -0.028, 0.056), (0.023, 0.024, 0.026)), 0.02)
    d = add(d, lambda u: _ellipsoid(u, y, z, (0.033, 0.004, 0.066), (0.021, 0.013, 0.016)), 0.015)
    d = add(d, lambda u: _ellipsoid(u, y, z, (0.046, -0.012, 0.042), (0.02, 0.026, 0.026)), 0.025)
    # Side of the face: zygomatic arch, temple, and the masseter over the jaw.
    d = add(d, lambda u: _round_cone(u, y, z, (0.052, 0.006, 0.04), (0.062, 0.003, 0.014), 0.008, 0.007), 0.015)
    d = add(d, lambda u: _ellipsoid(u, y, z, (0.056, 0.032, 0.028), (0.015, 0.03, 0.035)), 0.02)
    d = add(d, lambda u: _ellipsoid(u, y, z, (0.048, -0.03, 0.018), (0.016, 0.032, 0.028)), 0.02)
    # Mandible: ramus and body as rounded cones from below the ear to the chin.
    d = add(d, lambda u: _round_cone(u, y, z, (0.046, -0.012, -0.004), (0.044, -0.058, 0.0), 0.011, 0.012), 0.02)
    d = add(d, lambda u: _round_cone(u, y, z, (0.044, -0.058, 0.0), (0.017, -0.083, 0.066), 0.012, 0.011), 0.022)
    d = _smin(d, _ellipsoid(x, y, z, (0.0, -0.048, 0.030), (0.045, 0.040, 0.055)), 0.02)
    # Muzzle over the dental arches, where the lips sit, and the chin.
    d = _smin(d, _ellipsoid(x, y, z, (0.0, -0.043, 0.054), (0.031, 0.033, 0.043)), 0.014)
    d = _smin(d, _ellipsoid(x, y, z, (0.0, -0.077, 0.0755), (0.019, 0.015, 0.018)), 0.012)
    # Neck: an elliptic cylinder with a rounded bottom, joined to the skull at the nape.
    neck = (np.sqrt((x / 0.056) ** 2 + ((z + 0.012) / 0.052) ** 2) - 1.0) * 0.054
    neck = _smax(neck, _ellipsoid(x, y, z, (0.0, NECK_BOTTOM_Y + 0.05, -0.012), (0.1, 0.06, 0.1)), 0.012)
    neck = np.maximum(neck, y - 0.04)
    d = _smin(d, neck, 0.03)
    d = _smin(d, _ellipsoid(x, y, z, (0.0, 0.0, -0.04), (0.05, 0.045, 0.045)), 0.04)
    # Brow ridge across the forehead above the eyes.
    d = _smin(d, _ellipsoid(x, y, z, (0.0, 0.043, 0.079), (0.054, 0.011, 0.021)), 0.012)
    # Eye sockets carved under the brow, then the closed lids over the eyeballs.
    d = carve(d, lambda u: _ellipsoid(u, y, z, (0.0335, 0.028, 0.087), (0.0175, 0.012, 0.016)), 0.011)
    d = add(d, lambda u: _ellipsoid(u, y, z, (PUPIL_X, EYE_Y, EYE_Z), LID_RADII), 0.004)
    # Nose: the body is a long ellipsoid along the dorsum whose widest section is buried
    # in the face, so its sides face forward and stay visible from the ray starts; then
    # the root between the brows, the tip, the wings (alae) and shallow nostrils.
    nose = _ellipsoid_tilted(x, y, z, (0.0, 0.0036, 0.0878), (0.0092, 0.028, 0.0165), pitch=-0.519)
    nose = _smin(nose, _ellipsoid(x, y, z, (0.0, 0.036, 0.083), (0.017, 0.013, 0.013)), 0.014)
    nose = _smin(nose, _ellipsoid(x, y, z, (0.0, -0.0105, 0.1075), (0.0092, 0.0085, 0.009)), 0.007)
    nose = _smin(_smin(nose, _ellipsoid(x, y, z, (0.0118, -0.0168, 0.0925), (0.0064, 0.0064, 0.0088)), 0.006),
                 _ellipsoid(x, y, z, (-0.0118, -0.0168, 0.0925), (0.0064, 0.0064, 0.0088)), 0.006)
    d = _smin(d, nose, 0.011)
    d = carve(d, lambda u: _ellipsoid(u, y, z, NOSTRIL_CENTER, NOSTRIL_RADII), 0.0025)
    # Ears: a tilted bump on each side (the side columns are too coarse for folds);
    # far from the midline, so folding x is harmless here.
    ax = np.abs(x)
    d = _smin(d, _ellipsoid_tilted(ax, y, z, (0.072, 0.006, -0.014), (0.013, 0.03, 0.018), pitch=-0.25), 0.012)
    return d


# ---- rays ----------------------------------------------------------------------------------

def _directions(theta, phi) -> np.ndarray:
    """Unit ray directions ``[..., 3]`` at longitude ``theta`` (0 faces +z, positive
    toward +x) and latitude ``phi`` (positive up)."""
    theta, phi = np.broadcast_arrays(theta, phi)
    cp = np.cos(phi)
    return np.stack([cp * np.sin(theta), np.sin(phi), cp * np.cos(theta)], axis=-1)


def _ray_origins(theta, phi) -> np.ndarray:
    """Start ``[..., 3]`` of the ray at (``theta``, ``phi``): on the vertical axis at the
    eye line (so the eye row is the level row at latitude 0), sliding down the axis for
    the rows under the chin of the front columns so the throat and neck are not met at a
    grazing angle (at the back the skull overhangs the neck, and a lower start would jump
    past it). Within a column the start never moves down as latitude rises, so the rays
    of a column never cross in front of the axis."""
    theta, phi = np.broadcast_arrays(theta, phi)
    front = 1.0 - _smoothstep(0.8, 1.7, np.abs(theta))
    out = np.zeros(theta.shape + (3,))
    out[..., 1] = EYE_Y - 0.11 * front * _smoothstep(-0.95, -1.4, phi)
    return out


def _trace(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Hit points ``[N, 3]`` of rays (starts and unit directions ``[N, 3]``) on the
    outermost head surface. Sphere tracing inward from outside the head meets a surface
    from outside first, so parts that face away from the ray start (the nose underside)
    are still found on the correct side."""
    dist = np.full(len(directions), _RAY_START)
    active = np.arange(len(directions))
    for _ in range(200):
        p = origins[active] + dist[active, None] * directions[active]
        d = _head_sdf(p[:, 0], p[:, 1], p[:, 2])
        dist[active] -= 0.85 * d
        active = active[np.abs(d) > 2e-7]
        if active.size == 0:
            break
    return origins + dist[:, None] * directions


def _trace_grid(theta, phi) -> np.ndarray:
    """Hit points ``[..., 3]`` of the grid rays at (``theta``, ``phi``), broadcast."""
    theta, phi = np.broadcast_arrays(theta, phi)
    hits = _trace(_ray_origins(theta, phi).reshape(-1, 3), _directions(theta, phi).reshape(-1, 3))
    return hits.reshape(theta.shape + (3,))


# ---- grid layout -----------------------------------------------------------------------------
# Target spacing (radians) at a longitude: fine over the eyes and the mouth, medium over
# the ear, coarse at the back of the head.
_COLUMN_STEPS = [(0.0, 0.034), (0.25, 0.032), (0.58, 0.034), (0.75, 0.07), (1.1, 0.11), (1.3, 0.09),
                 (1.85, 0.11), (2.3, 0.3), (math.pi, 0.36)]
# Target spacing (radians) at a latitude: fine on the lips and lids.
_ROW_STEPS = [(-math.pi / 2, 0.12), (-1.35, 0.08), (-1.2, 0.055), (-1.0, 0.04), (-0.85, 0.024),
              (-0.72, 0.02), (-0.64, 0.017), (-0.56, 0.02), (-0.45, 0.04), (-0.3, 0.05),
              (-0.15, 0.028), (-0.1, 0.019), (0.0, 0.018), (0.15, 0.022), (0.3, 0.055), (0.5, 0.09),
              (0.9, 0.15), (math.pi / 2, 0.22)]


def _graded(steps: list[tuple[float, float]], anchors: list[float]) -> np.ndarray:
    """Samples from the first to the last anchor, every anchor included, spaced by the
    step interpolated from ``steps`` (position, step)."""
    kx = np.array([k[0] for k in steps])
    ks = np.array([k[1] for k in steps])
    out = [anchors[0]]
    for a, b in zip(anchors[:-1], anchors[1:]):
        xs = np.linspace(a, b, 4001)
        density = 1.0 / np.interp(xs, kx, ks)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(xs))])
        count = max(1, int(round(cum[-1])))
        out.extend(np.interp(np.linspace(0.0, cum[-1], count + 1)[1:], cum, xs).tolist())
        out[-1] = b
    return np.asarray(out)


def _row_edge_target(phi) -> np.ndarray:
    """Target edge length (metres) along a column at latitude ``phi``."""
    return 0.1 * np.interp(phi, [k[0] for k in _ROW_STEPS], [k[1] for k in _ROW_STEPS])


class _Grid:
    """Longitudes of the columns, base latitudes of the rows, and special rows/columns."""

    def __init__(self) -> None:
        half = _graded(_COLUMN_STEPS, [0.0, math.pi])
        # Columns from -pi (exclusive) to pi: mirror symmetric, one column at 0 and at pi.
        self.theta = np.concatenate([-half[1:-1][::-1], half])
        self.n_cols = len(self.theta)
        self.center_col = len(half) - 2
        mouth_phi = math.atan2(MOUTH_Y - EYE_Y, 0.097)
        self.phi = _graded(_ROW_STEPS, [-math.pi / 2 + 0.06, mouth_phi, 0.0, math.pi / 2 - 0.06])
        self.n_rows = len(self.phi)
        self.mouth_row = int(np.argmin(np.abs(self.phi - mouth_phi)))
        self.eye_row = int(np.argmin(np.abs(self.phi)))
        self.mouth_corner_col = self.nearest_col(math.atan2(MOUTH_HALF_WIDTH, 0.085))
        self.eye_inner_col = self.nearest_col(math.atan2(PUPIL_X - 0.0136, 0.081))
        self.eye_outer_col = self.nearest_col(math.atan2(PUPIL_X + 0.0142, 0.0795))

    def mirror(self, j: int) -> int:
        """The column mirrored across the midline."""
        return 2 * self.center_col - j if j != self.n_cols - 1 else j

    def nearest_col(self, theta: float) -> int:
        return int(np.argmin(np.abs(self.theta - theta)))


def _relaxed_rows(grid: _Grid, phi: np.ndarray, pts: np.ndarray, poles: np.ndarray) -> np.ndarray:
    """New row latitudes ``[n_rows, n_cols]`` from a traced grid (latitudes ``phi`` and hit
    points ``pts`` ``[n_rows, n_cols, 3]``, pole points ``[2, 3]``).

    Rows are spread by arc length over the target edge length between anchor rows: the
    poles, the eye row (latitude 0), the mouth row (on the level lip line over the front
    of the face) and, across the mouth, the two vermilion-border rows.
    """
    nr, nc = grid.n_rows, grid.n_cols
    im, ie = grid.mouth_row, grid.eye_row
    corner_x = abs(pts[im, grid.mouth_corner_col, 0])
    band = slice(im - 2 * LOWER_LIP_ROWS, im + 2 * UPPER_LIP_ROWS + 1)
    # Arc length along each column, resampled on common latitudes and smoothed over
    # neighbouring columns: a narrow feature (the nose) must not bend the rows sharply.
    fine = np.linspace(-math.pi / 2, math.pi / 2, 721)
    arc = np.empty((nc, len(fine)))
    for j in range(nc):
        col = np.concatenate([poles[:1], pts[:, j], poles[1:]])
        lat = np.concatenate([[-math.pi / 2], phi[:, j], [math.pi / 2]])
        arc[j] = np.interp(fine, lat, np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(col, axis=0), axis=1))]))
    offsets = np.arange(-4, 5)
    kernel = np.exp(-0.5 * (offsets / 1.5) ** 2)
    arc = sum(k * np.roll(arc, -o, axis=0) for k, o in zip(kernel / kernel.sum(), offsets))
    step = np.diff(arc, axis=1) / _row_edge_target(0.5 * (fine[1:] + fine[:-1]))[None, :]
    u_all = np.concatenate([np.zeros((nc, 1)), np.cumsum(step, axis=1)], axis=1)

    def spread(u, anchors):
        rows_out = np.empty(nr)
        anchors = sorted(anchors)
        anchors_u = np.interp([a[1] for a in anchors], fine, u)
        for k in range(len(anchors) - 1):
            r0, r1 = anchors[k][0], anchors[k + 1][0]
            rows = np.arange(r0 + 1, r1 + 1) if r1 < nr else np.arange(r0 + 1, r1)
            frac = (rows - r0) / (r1 - r0)
            rows_out[rows] = np.interp(anchors_u[k] + frac * (anchors_u[k + 1] - anchors_u[k]), u, fine)
        return rows_out

    out = np.empty((nr, nc))
    for j in range(nc):
        u = u_all[j]
        ys = pts[:, j, 1]

        def latitude_at(y_target):
            """Latitude where this column crosses the level ``y_target``, nearest the mouth."""
            k = np.nonzero((ys[:-1] <= y_target) & (ys[1:] > y_target))[0]
            k = int(k[np.argmin(np.abs(k - im))])
            t = (y_target - ys[k]) / (ys[k + 1] - ys[k])
            return float(phi[k, j] + t * (phi[k + 1, j] - phi[k, j]))

        # Plain latitude rows would curve up at the mouth corners (the corners lie further
        # back); over the front of the face the mouth row is put on the level lip line.
        front = 1.0 - _smoothstep(0.9, 1.25, abs(grid.theta[j]))
        aligned = front > 0.0 and bool(np.all(np.diff(ys[band]) > 0))
        phi_m = phi[im, j]
        if aligned:
            phi_m += front * (latitude_at(MOUTH_Y) - phi_m)
        anchors = [(-1, -math.pi / 2), (im, phi_m), (ie, 0.0), (nr, math.pi / 2)]
        rows = spread(u, anchors)
        if aligned:
            # The vermilion borders are grid rows: a clean colour boundary for the lips.
            s = pts[im, j, 0] / corner_x
            lip = front * (1.0 - _smoothstep(1.0, 1.5, abs(s)))
            if lip > 0.0:
                up, lo = im + UPPER_LIP_ROWS, im - LOWER_LIP_ROWS
                phi_up = rows[up] + lip * (latitude_at(MOUTH_Y + _upper_lip_height(s)) - rows[up])
                phi_lo = rows[lo] + lip * (latitude_at(MOUTH_Y - _lower_lip_height(s)) - rows[lo])
                rows = spread(u, anchors + [(up, phi_up), (lo, phi_lo)])
        out[:, j] = rows
    return out


# ---- lips and lids ---------------------------------------------------------------------------

def _pchip(knots: list[tuple[float, float]]):
    """A monotone cubic through ``knots`` (x, y), clamped to their x range."""
    from scipy.interpolate import PchipInterpolator

    kx, ky = (np.asarray(v, dtype=np.float64) for v in zip(*knots))
    curve = PchipInterpolator(kx, ky, extrapolate=False)
    return lambda t: curve(np.clip(np.asarray(t, dtype=np.float64), kx[0], kx[-1]))


# Forward bulge of a lip against the height from the lip line, in units of the lip's red
# height: behind the surface at the rim (the lip rolls inward to the contact line), most
# forward a little past the middle, a slight ridge at the border, then skin.
_UPPER_LIP_PROFILE = _pchip([(0.0, -0.95), (0.12, -0.25), (0.3, 0.55), (0.5, 0.95), (0.68, 1.0),
                             (0.88, 0.78), (1.0, 0.62), (1.12, 0.5), (1.6, 0.2), (2.4, 0.0)])
_LOWER_LIP_PROFILE = _pchip([(0.0, -0.95), (0.12, -0.2), (0.3, 0.6), (0.5, 0.95), (0.65, 1.0),
                             (0.85, 0.8), (1.05, 0.35), (1.35, -0.1), (1.7, -0.2), (2.4, 0.0)])


def _lip_taper(s):
    """1 in the middle of the mouth, falling smoothly to 0 at the corners (|s| = 1)."""
    s = np.clip(np.abs(s), 0.0, 1.0)
    return (1.0 - s * s) ** 1.2


def _upper_lip_height(s):
    """Red height of the upper lip at ``s`` along the mouth (-1..1), with cupid's bow:
    two peaks either side of a shallow dip in the middle."""
    s = np.abs(s)
    bow = 0.09 * np.exp(-((s - 0.2) / 0.1) ** 2) - 0.06 * np.exp(-(s / 0.08) ** 2)
    return UPPER_LIP_HEIGHT * (0.3 + 0.7 * np.sqrt(np.clip(1.0 - s * s, 0.0, 1.0))) * (1.0 + bow)


def _lower_lip_height(s):
    s = np.abs(s)
    return LOWER_LIP_HEIGHT * (0.3 + 0.7 * np.sqrt(np.clip(1.0 - s * s, 0.0, 1.0)))


def _lid_angles(p, eye_center, side, inner_x, outer_x, upper: bool) -> np.ndarray:
    """Opening angle (radians) of lid points ``[N, 3]`` of one eye: largest on the rim in
    the middle, fading toward the corners and away from the rim (into the lid fold above
    and the cheek below). ``side`` is +1 for the eye at +x; ``inner_x``/``outer_x`` are the
    corners' lateral offsets from the pupil."""
    lateral = side * (p[:, 0] - eye_center[0])
    s = np.clip((lateral - 0.5 * (inner_x + outer_x)) / (0.5 * (outer_x - inner_x)), -1.0, 1.0)
    # The upper lid peaks slightly toward the nose, the lower lid slightly outward.
    shift = -0.12 if upper else 0.1
    along = np.clip(1.0 - ((s - shift) / (1.0 + np.sign(s - shift) * shift)) ** 2, 0.0, 1.0) ** 0.75
    q = p - eye_center
    elevation = np.arctan2(q[:, 1], np.maximum(q[:, 2], 1e-6))
    if upper:
        away, base = np.clip(elevation / 0.95, 0.0, 1.0), UPPER_LID_ANGLE
    else:
        away, base = np.clip(-elevation / 0.75, 0.0, 1.0), -LOWER_LID_ANGLE
    return base * along * (1.0 - away) ** 1.5


def _turn_up(p: np.ndarray, center: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Points ``[N, 3]`` turned about the x axis through ``center``; a positive angle
    ``[N]`` moves the front upward."""
    q = p - center
    c, s = np.cos(angle), np.sin(angle)
    out = p.copy()
    out[:, 1] = center[1] + q[:, 1] * c + q[:, 2] * s
    out[:, 2] = center[2] - q[:, 1] * s + q[:, 2] * c
    return out


# ---- assembly --------------------------------------------------------------------------------

@dataclass
class _Surface:
    """The skin: a grid of ``n_rows x n_cols`` vertices (row-major), the two poles, then
    the duplicated lower rims of the mouth and eye slits."""

    grid: _Grid
    verts: np.ndarray  # [n_surface, 3]
    faces: list
    row: np.ndarray  # grid row of each surface vertex (-1 for the poles)
    col: np.ndarray  # grid column of each surface vertex (-1 for the poles)
    mouth_cols: np.ndarray  # corner to corner, both corners included
    mouth_lower: dict  # column -> lower-rim copy, inside the corners
    eye_cols: tuple  # (subject's right eye columns, left eye columns)
    eye_lower: tuple  # (right, left): column -> lower-lid copy

    def index(self, i: int, j: int) -> int:
        return i * self.grid.n_cols + j


def _build_surface() -> _Surface:
    grid = _Grid()
    nr, nc = grid.n_rows, grid.n_cols
    im, ie = grid.mouth_row, grid.eye_row
    theta = grid.theta[None, :]
    # Trace the plain grid, then relax the rows twice (each relaxation is traced again).
    phi = np.broadcast_to(grid.phi[:, None], (nr, nc)).copy()
    pts = _trace_grid(theta, phi)
    poles = _trace_grid(np.zeros(2), np.array([-math.pi / 2, math.pi / 2]))
    for _ in range(2):
        phi = _relaxed_rows(grid, phi, pts, poles)
        pts = _trace_grid(theta, phi)

    # Slits: the rim vertices strictly inside the corners get a lower copy.
    jr = grid.mouth_corner_col
    mouth_cols = np.arange(grid.mirror(jr), jr + 1)
    eye_left = np.arange(grid.eye_inner_col, grid.eye_outer_col + 1)  # +x, subject's left
    eye_right = np.arange(grid.mirror(grid.eye_outer_col), grid.mirror(grid.eye_inner_col) + 1)
    n_grid = nr * nc
    next_index = n_grid + 2  # after the two poles
    lower_copy = {}
    tables = []
    for row, cols in ((im, mouth_cols), (ie, eye_right), (ie, eye_left)):
        table = {}
        for j in cols[1:-1]:
            table[int(j)] = next_index
            lower_copy[(row, int(j))] = next_index
            next_index += 1
        tables.append(table)
    verts = np.zeros((next_index, 3))
    verts[:n_grid] = pts.reshape(-1, 3)
    verts[n_grid:n_grid + 2] = poles
    row = np.full(next_index, -1)
    col = np.full(next_index, -1)
    row[:n_grid] = np.repeat(np.arange(nr), nc)
    col[:n_grid] = np.tile(np.arange(nc), nr)
    for (i, j), v in lower_copy.items():
        verts[v] = verts[i * nc + j]
        row[v], col[v] = i, j
    is_lower_copy = np.zeros(next_index, bool)
    is_lower_copy[list(lower_copy.values())] = True

    _shape_lips(verts, row, grid, pts[im, jr, 0])
    # Open the eyes: turn the lids about the eyeball centre, off the closed-lid line.
    for side, cols in ((-1.0, eye_right), (1.0, eye_left)):
        center = np.array([side * PUPIL_X, EYE_Y, EYE_Z])
        inner_x = abs(verts[ie * nc + grid.eye_inner_col, 0]) - PUPIL_X
        outer_x = abs(verts[ie * nc + grid.eye_outer_col, 0]) - PUPIL_X
        q = verts - center
        near = np.nonzero((np.hypot(q[:, 0], q[:, 1]) < 0.03) & (q[:, 2] > -0.012) & (row >= 0))[0]
        p = verts[near]
        upper = (row[near] > ie) | ((row[near] == ie) & ~is_lower_copy[near])
        angle = np.where(upper, _lid_angles(p, center, side, inner_x, outer_x, True),
                         _lid_angles(p, center, side, inner_x, outer_x, False))
        verts[near] = _turn_up(p, center, angle)

    # Faces: two triangles a quad, counter-clockwise seen from outside (longitude grows
    # toward +x, latitude upward, so (east, north) is outward). Quads just below a slit
    # use the lower copies of its rim.
    faces = []
    bottom, top = n_grid, n_grid + 1
    for j in range(nc):
        faces.append((bottom, (j + 1) % nc, j))
        faces.append(((nr - 1) * nc + j, (nr - 1) * nc + (j + 1) % nc, top))
    for i in range(nr - 1):
        for j in range(nc):
            j1 = (j + 1) % nc
            a, b = i * nc + j, i * nc + j1
            c = lower_copy.get((i + 1, j1), (i + 1) * nc + j1)
            d = lower_copy.get((i + 1, j), (i + 1) * nc + j)
            # Split along the shorter diagonal: mirror symmetric by itself, and free of
            # the chevron creases a fixed split leaves on saddles such as the nasion.
            ac = np.sum((verts[a] - verts[c]) ** 2)
            bd = np.sum((verts[b] - verts[d]) ** 2)
            if ac < bd - 1e-12 or (abs(ac - bd) <= 1e-12 and grid.theta[j] >= 0.0):
                faces += [(a, b, c), (a, c, d)]
            else:
                faces += [(a, b, d), (b, c, d)]
    return _Surface(grid, verts, faces, row, col, mouth_cols, tables[0], (eye_right, eye_left),
                    (tables[1], tables[2]))


def _shape_lips(verts: np.ndarray, row: np.ndarray, grid: _Grid, corner_x: float) -> None:
    """Bulge the lips forward from the muzzle and roll their rims inward (in place)."""
    x, y = verts[:, 0], verts[:, 1]
    s = x / abs(corner_x)
    h = np.abs(y - MOUTH_Y)
    # Rows decide the side: the two copies of a rim vertex share a position and must
    # move alike, so the whole slit row takes the upper lip's profile.
    upper = row >= grid.mouth_row
    bulge = np.where(upper, UPPER_LIP_BULGE * _UPPER_LIP_PROFILE(h / _upper_lip_height(s)),
                     LOWER_LIP_BULGE * _LOWER_LIP_PROFILE(h / _lower_lip_height(s)))
    near = (np.abs(s) < 1.0) & (y - MOUTH_Y > -3.0 * LOWER_LIP_HEIGHT) & (y - MOUTH_Y < 3.0 * UPPER_LIP_HEIGHT)
    verts[:, 2] += np.where(near & (row >= 0), bulge * _lip_taper(s), 0.0)
    # Philtrum: two soft ridges from the bow's peaks up to the nose.
    ridge = np.exp(-((np.abs(x) - 0.0048) / 0.0022) ** 2)
    window = _smoothstep(MOUTH_Y + 0.7 * UPPER_LIP_HEIGHT, MOUTH_Y + 1.1 * UPPER_LIP_HEIGHT, y) * \
        (1.0 - _smoothstep(NOSE_BOTTOM_Y - 0.008, NOSE_BOTTOM_Y, y))
    verts[:, 2] += 0.0007 * ridge * window * (verts[:, 2] > 0.07)


def _add_inner_mouth(surface: _Surface, verts: list, faces: list) -> dict:
    """Close the mouth behind the lips with a pocket: rings stepping back and opening
    from the lip rims, capped at the throat. The first ring is the wet inner lip."""
    grid = surface.grid
    upper_rim = [surface.index(grid.mouth_row, j) for j in surface.mouth_cols]
    lower_rim = [surface.mouth_lower[int(j)] for j in surface.mouth_cols[-2:0:-1]]
    # One loop: the upper rim from corner to corner, back along the lower rim; the faces
    # of the lips run the other way round it, so the pocket continues the skin's winding.
    rim = np.array([verts[v] for v in upper_rim + lower_rim])
    n_loop, n_up = len(rim), len(upper_rim)
    sign = np.array([1.0] * n_up + [-1.0] * len(lower_rim))
    s = np.clip(np.abs(rim[:, 0]) / abs(rim[0, 0]), 0.0, 1.0)
    opening_profile = np.sqrt(1.0 - s ** 2)
    front_z = float(rim[:, 2].max())
    loops = [upper_rim + lower_rim]
    # (back, opening, narrowing) of each ring
    for back, opening, narrow in [(0.0025, 0.0022, 0.97), (0.0065, 0.0075, 0.92), (0.0125, 0.0115, 0.84),
                                  (0.02, 0.0125, 0.74), (0.028, 0.010, 0.58)]:
        ring = rim.copy()
        ring[:, 0] *= narrow
        ring[:, 1] = MOUTH_Y + sign * opening * opening_profile
        ring[:, 2] = np.minimum(rim[:, 2], front_z) - back - 0.004 * s ** 2 * (back > 0.003)
        loops.append(list(range(len(verts), len(verts) + n_loop)))
        verts.extend(ring)
    throat = len(verts)
    verts.append(np.array([0.0, MOUTH_Y, front_z - 0.034]))
    for la, lb in zip(loops[:-1], loops[1:]):
        for m in range(n_loop):
            m1 = (m + 1) % n_loop
            faces += [(la[m1], la[m], lb[m]), (la[m1], lb[m], lb[m1])]
    faces += [(loops[-1][(m + 1) % n_loop], loops[-1][m], throat) for m in range(n_loop)]
    return {
        "inner_lip": np.asarray(loops[1]),
        "pocket": np.asarray([v for loop in loops[1:] for v in loop] + [throat]),
        "upper": np.asarray([loop[m] for loop in loops[1:] for m in range(1, n_up - 1)]),
        "lower": np.asarray([loop[m] for loop in loops[1:] for m in range(n_up, n_loop)]),
        "front_z": front_z,
    }


def _add_teeth_row(verts: list, faces: list, front_z, half_width, top, bottom, depth, thickness) -> np.ndarray:
    """A thin closed band along a dental arch: front, back, top and bottom faces and two
    end caps. Returns its vertex indices."""
    n = 15
    angle = np.linspace(-1.05, 1.05, n)
    arch_x = half_width * np.sin(angle) / math.sin(1.05)
    arch_z = front_z - depth * (1.0 - np.cos(angle)) / (1.0 - math.cos(1.05))
    tx, tz = np.gradient(arch_x), np.gradient(arch_z)
    norm = np.hypot(tx, tz)
    nx, nz = tz / norm, -tx / norm  # into the mouth
    base = len(verts)
    for k in range(n):
        for yy, t in ((top, 0.0), (bottom, 0.0), (bottom, thickness), (top, thickness)):
            verts.append(np.array([arch_x[k] + nx[k] * t, yy, arch_z[k] + nz[k] * t]))
    for k in range(n - 1):
        a, b = base + 4 * k, base + 4 * (k + 1)
        for e in range(4):
            e1 = (e + 1) % 4
            faces += [(a + e, b + e, b + e1), (a + e, b + e1, a + e1)]
    first, last = base, base + 4 * (n - 1)
    faces += [(first, first + 1, first + 2), (first, first + 2, first + 3),
              (last, last + 2, last + 1), (last, last + 3, last + 2)]
    return np.arange(base, base + 4 * n)


def _add_eyeball(verts: list, faces: list, center: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sphere with its pole at the pupil and rings at the pupil and iris edges.
    Returns (all, iris, pupil) vertex indices."""
    rings = np.array([0.18, 0.36, 0.5, 0.56, 0.75, 1.1, 1.6, 2.3])  # polar angle from the pupil
    n_seg = 12
    base = len(verts)
    verts.append(center + np.array([0.0, 0.0, EYEBALL_RADIUS]))
    for ra in rings:
        for k in range(n_seg):
            az = 2.0 * math.pi * k / n_seg
            verts.append(center + EYEBALL_RADIUS * np.array(
                [math.sin(ra) * math.cos(az), math.sin(ra) * math.sin(az), math.cos(ra)]))
    back = len(verts)
    verts.append(center + np.array([0.0, 0.0, -EYEBALL_RADIUS]))

    def ring(r, k):
        return base + 1 + r * n_seg + (k % n_seg)

    for k in range(n_seg):
        faces += [(base, ring(0, k), ring(0, k + 1)), (back, ring(len(rings) - 1, k + 1), ring(len(rings) - 1, k))]
    for r in range(len(rings) - 1):
        for k in range(n_seg):
            a, b, c, d = ring(r, k), ring(r, k + 1), ring(r + 1, k + 1), ring(r + 1, k)
            faces += [(a, d, c), (a, c, b)]
    iris = [base] + [ring(r, k) for r in range(3) for k in range(n_seg)]
    pupil = [base] + [ring(0, k) for k in range(n_seg)]
    return np.arange(base, back + 1), np.asarray(iris), np.asarray(pupil)


def build_head() -> Template:
    """The procedural head as a ``Template``: vertices float32 ``[V, 3]`` (about 5,500),
    faces int64 ``[F, 3]`` counter-clockwise seen from outside, regions and vertex pairs.

    Deterministic: the same bytes on every call, in about half a second.

    Regions (int64 vertex indices): ``lips`` (both lips, rims included, and the wet inner
    lip), ``upper_lip``, ``lower_lip``, ``eyes`` (lids and around the openings),
    ``eyelids_upper``, ``eyelids_lower``, ``eyeballs``, ``irises``, ``pupils``, ``brows``,
    ``forehead``, ``nose``, ``nostrils``, ``cheeks``, ``upper_face`` (everything in front
    above the nose bottom; never moved by the jaw), ``jaw`` (moved by the jaw),
    ``inner_mouth`` (the dark pocket), ``inner_mouth_upper``, ``inner_mouth_lower``,
    ``teeth``, ``teeth_upper``, ``teeth_lower``, ``face`` (the front, for display),
    ``neck``.

    Vertex pairs: ``inner_lip_pairs`` ``[P, 2]`` (upper rim, lower rim) along the mouth
    opening, touching at rest; ``eyelid_pairs`` ``[Q, 2]`` (upper, lower) along both eye
    openings; ``lip_corners`` ``[1, 2]`` (subject's right, left corner);
    ``lip_midpoints`` ``[1, 2]`` (the most forward upper and lower lip vertices).
    """
    surface = _build_surface()
    grid = surface.grid
    verts = list(surface.verts)
    faces = list(surface.faces)
    mouth = _add_inner_mouth(surface, verts, faces)
    teeth_front = mouth["front_z"] - 0.0045
    teeth_upper = _add_teeth_row(verts, faces, teeth_front, 0.021, MOUTH_Y + 0.0095, MOUTH_Y - 0.0008, 0.017, 0.0025)
    teeth_lower = _add_teeth_row(verts, faces, teeth_front - 0.0032, 0.019, MOUTH_Y - 0.0012, MOUTH_Y - 0.0105,
                                 0.016, 0.0025)
    balls = [_add_eyeball(verts, faces, np.array([side * PUPIL_X, EYE_Y, EYE_Z])) for side in (-1.0, 1.0)]
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)

    n_all, n_surface = len(verts), len(surface.verts)
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    on_skin = np.zeros(n_all, bool)
    on_skin[:n_surface] = True
    front = on_skin & (z > 0.0)
    row = np.full(n_all, -100)
    col = np.full(n_all, -100)
    row[:n_surface], col[:n_surface] = surface.row, surface.col
    im, ie = grid.mouth_row, grid.eye_row

    # Lips: the grid rows between the lip line and the vermilion borders.
    in_mouth = (col >= surface.mouth_cols[0]) & (col <= surface.mouth_cols[-1])
    mouth_lower = np.zeros(n_all, bool)
    mouth_lower[list(surface.mouth_lower.values())] = True
    upper_lip = np.nonzero(in_mouth & (row >= im) & (row <= im + UPPER_LIP_ROWS) & ~mouth_lower)[0]
    lower_lip = np.nonzero(in_mouth & (((row >= im - LOWER_LIP_ROWS) & (row < im)) | mouth_lower))[0]
    lips = np.union1d(np.union1d(upper_lip, lower_lip), mouth["inner_lip"])

    near_eye = np.zeros(n_all, bool)
    for side in (-1.0, 1.0):
        q = verts - np.array([side * PUPIL_X, EYE_Y, EYE_Z])
        near_eye |= ((q[:, 0] / 0.021) ** 2 + (q[:, 1] / 0.0145) ** 2 < 1.0) & (q[:, 2] > -0.006)
    near_eye &= on_skin
    lid_band = np.abs(np.abs(x) - PUPIL_X) < 0.015
    # Brows: an arched band over each eye, thick at the inner end, thin at the tail.
    bx = np.clip((np.abs(x) - 0.012) / 0.043, 0.0, 1.0)
    brow_y = EYE_Y + 0.0175 + 0.0045 * np.sin(np.pi * np.minimum(bx * 1.25, 1.0)) - 0.002 * bx
    brow_half = 0.0036 - 0.0016 * bx
    nostrils = np.zeros(n_all, bool)
    for side in (-1.0, 1.0):
        q = (verts - np.array([side * NOSTRIL_CENTER[0], NOSTRIL_CENTER[1], NOSTRIL_CENTER[2]])) / \
            (1.4 * np.asarray(NOSTRIL_RADII))
        nostrils |= on_skin & (np.sum(q * q, axis=1) < 1.0)

    regions = {
        "lips": lips,
        "upper_lip": upper_lip,
        "lower_lip": lower_lip,
        "eyes": np.nonzero(near_eye)[0],
        "eyelids_upper": np.nonzero(near_eye & lid_band & (y > EYE_Y))[0],
        "eyelids_lower": np.nonzero(near_eye & lid_band & (y < EYE_Y))[0],
        "eyeballs": np.concatenate([b[0] for b in balls]),
        "irises": np.concatenate([b[1] for b in balls]),
        "pupils": np.concatenate([b[2] for b in balls]),
        "brows": np.nonzero(front & (np.abs(x) > 0.012) & (np.abs(x) < 0.055) & (np.abs(y - brow_y) < brow_half)
                            & (z > 0.06))[0],
        "forehead": np.nonzero(front & (np.abs(x) < 0.058) & (y > EYE_Y + 0.012) & (y < 0.118) & (z > 0.045))[0],
        "nose": np.nonzero(front & (np.abs(x) < 0.021) & (y > NOSE_BOTTOM_Y - 0.003) & (y < EYE_Y + 0.004)
                           & (z > 0.086 + 0.25 * np.abs(x)))[0],
        "nostrils": np.nonzero(nostrils)[0],
        "cheeks": np.nonzero(front & (np.abs(x) > 0.022) & (np.abs(x) < 0.066) & (y > MOUTH_Y - 0.01)
                             & (y < EYE_Y - 0.013) & (z > 0.03))[0],
        # Everything in front above the nose bottom: jaw_weights keeps it still.
        "upper_face": np.nonzero(front & (y > NOSE_BOTTOM_Y - 0.002) & (y < 0.12) & (np.abs(x) < 0.062)
                                 & (z > 0.03))[0],
        "inner_mouth": np.setdiff1d(mouth["pocket"], mouth["inner_lip"]),
        "inner_mouth_upper": mouth["upper"],
        "inner_mouth_lower": mouth["lower"],
        "teeth": np.concatenate([teeth_upper, teeth_lower]),
        "teeth_upper": teeth_upper,
        "teeth_lower": teeth_lower,
        "face": np.nonzero(on_skin & (z > 0.02) & (y > CHIN_Y - 0.012) & (y < 0.118) & (np.abs(x) < 0.07))[0],
        "neck": np.nonzero(on_skin & (y < CHIN_Y - 0.008))[0],
    }
    regions = {k: np.asarray(v, dtype=np.int64) for k, v in regions.items()}
    verts32 = verts.astype(np.float32)
    regions["jaw"] = np.nonzero(jaw_weights(verts32, regions) > 0.0)[0]

    center = upper_lip[col[upper_lip] == grid.center_col]
    center_low = lower_lip[col[lower_lip] == grid.center_col]
    pairs = {
        "inner_lip_pairs": np.array([[surface.index(im, j), surface.mouth_lower[int(j)]]
                                     for j in surface.mouth_cols[1:-1]], dtype=np.int64),
        "eyelid_pairs": np.array([[surface.index(ie, j), table[int(j)]]
                                  for cols, table in zip(surface.eye_cols, surface.eye_lower) for j in cols[1:-1]],
                                 dtype=np.int64),
        "lip_corners": np.array([[surface.index(im, surface.mouth_cols[0]),
                                  surface.index(im, surface.mouth_cols[-1])]], dtype=np.int64),
        "lip_midpoints": np.array([[center[np.argmax(z[center])], center_low[np.argmax(z[center_low])]]],
                                  dtype=np.int64),
    }
    return Template(verts32, faces, regions, pairs)


def jaw_weights(vertices: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """How much each vertex follows the jaw, float64 ``[V]`` in [0, 1].

    1 for the chin, the jaw and the lower teeth; the lower lip and the lower inner mouth
    follow fully in the middle and less toward the corners (the lips stretch there, so
    the opening is a lens, not a box); 0 for the upper lip, the upper teeth, the eyeballs
    and the upper face (exactly, so eyes and brows never move with the jaw). In between
    the weight falls off smoothly: sharply at the lip line, widening over the cheeks
    toward the hinge, down the neck and behind the hinge. ``vertices`` ``[V, 3]`` and
    ``regions`` are those of ``build_head``.
    """
    v = np.asarray(vertices, dtype=np.float64)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    ax = np.abs(x)
    hinge_y, hinge_z = JAW_HINGE[1], JAW_HINGE[2]
    # The jaw line runs level from the mouth corners, then rises toward the hinge.
    line = MOUTH_Y + (hinge_y - 0.004 - MOUTH_Y) * _smoothstep(MOUTH_HALF_WIDTH, 0.066, ax)
    width = 0.005 + 0.012 * _smoothstep(MOUTH_HALF_WIDTH - 0.004, MOUTH_HALF_WIDTH + 0.022, ax)
    below = 1.0 - _smoothstep(line - width, line + width, y)
    neck = 1.0 - _smoothstep(CHIN_Y - 0.01, CHIN_Y - 0.045, y)
    behind = _smoothstep(hinge_z - 0.03, hinge_z + 0.005, z)
    above_cap = 1.0 - _smoothstep(NOSE_BOTTOM_Y - 0.012, NOSE_BOTTOM_Y - 0.002, y)
    s = ax / MOUTH_HALF_WIDTH
    taper = np.where(s < 1.0, 0.3 + 0.7 * np.sqrt(np.clip(1.0 - s * s, 0.0, 1.0)),
                     0.3 + 0.7 * _smoothstep(1.0, 2.0, s))
    taper = 1.0 - (1.0 - taper) * (1.0 - _smoothstep(0.0, 0.02, MOUTH_Y - y))  # full by the chin
    w = below * neck * behind * above_cap * taper

    def region(name):
        return regions.get(name, np.zeros(0, dtype=np.int64))

    for name in ("lower_lip", "inner_mouth_lower"):
        w[region(name)] = taper[region(name)]
    w[region("teeth_lower")] = 1.0
    for name in ("upper_lip", "inner_mouth_upper", "teeth_upper", "eyeballs", "upper_face"):
        w[region(name)] = 0.0
    return w


# Display albedo (sRGB, 0..1) of the head's regions, later entries painted over earlier.
DISPLAY_COLORS = {
    "skin": (0.87, 0.69, 0.60),
    "brows": (0.62, 0.48, 0.40),
    "lips": (0.72, 0.40, 0.40),
    "inner_mouth": (0.22, 0.06, 0.07),
    "teeth": (0.95, 0.93, 0.86),
    "eyeballs": (0.93, 0.92, 0.90),
    "irises": (0.25, 0.17, 0.12),
    "pupils": (0.05, 0.04, 0.04),
}


def display_colors(template: Template) -> np.ndarray:
    """Per-vertex albedo float32 ``[V, 3]`` (sRGB in [0, 1]) for rendering the head:
    skin, darker brows, red lips, a dark inner mouth, white teeth and eyes with iris and
    pupil. Pass it as ``vertex_colors`` to ``voxmesh.render``."""
    colors = np.tile(np.asarray(DISPLAY_COLORS["skin"], dtype=np.float32), (template.num_vertices, 1))
    for name, color in DISPLAY_COLORS.items():
        if name != "skin" and name in template.regions:
            colors[template.regions[name]] = color
    return colors

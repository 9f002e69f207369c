"""A headless software renderer for face meshes: a z-buffered triangle rasteriser in
numba, with smooth per-pixel lighting, a fixed camera for a whole sequence, per-vertex
colours and error heat maps.

Conventions: world space is in metres, y up, z toward the viewer; the camera looks down
-z. Images are ``uint8 [H, W, 3]`` RGB with row 0 at the top.

Pipeline of one frame (every stage is a numba kernel, so Python does a handful of calls):
  1. ``_prepare_vertices``: area-weighted vertex normals, rotation into camera space,
     projection to fixed-point pixel coordinates, per-triangle facing and row range.
  2. ``_rasterize``: integer edge functions with the top-left fill rule; the depth test
     keeps, per pixel, the nearest triangle id and two barycentric weights. The image is
     split into horizontal bands, one a task, so threads never write the same pixel.
  3. ``_shade``: deferred shading of the visible surface only (each pixel is lit once,
     however many triangles overlapped it), two-sided: a triangle seen from behind has
     its normals flipped toward the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numba
import numpy as np
from numba import njit, prange

from voxmesh.errors import VoxmeshError

__all__ = [
    "SKIN_COLOR",
    "Camera",
    "Lighting",
    "Renderer",
    "render_frame",
    "render_sequence",
    "error_colors",
]

# A light, warm skin albedo (sRGB, 0..1).
SKIN_COLOR: tuple[float, float, float] = (0.87, 0.69, 0.60)
DEFAULT_BACKGROUND: tuple[int, int, int] = (242, 242, 242)

# Sub-pixel precision of the fixed-point screen coordinates (4 bits): exact integer
# edge functions give watertight meshes, no cracks and no double-drawn shared edges.
_SUBPIXEL = 16
# Screen coordinates are clamped to this many pixels so fixed-point products fit int64.
_COORD_LIMIT = 1.0e5
# Number of gamma-encoding table entries (linear light -> sRGB byte).
_LUT_SIZE = 4096
# Perspective: vertices nearer the camera plane than this (metres) are dropped.
_NEAR = 1e-3


# --------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class Camera:
    """A fixed view of the mesh.

    center: world point (metres) that lands in the image centre; the mesh is rotated
    about it. scale: pixels per metre at the centre's depth. yaw_degrees: rotation
    about the vertical axis; positive turns the face toward the image's right.
    pitch_degrees: rotation about the horizontal axis; positive tilts the face down.
    fov_degrees: vertical field of view for a perspective camera placed so that the
    centre's depth keeps ``scale``; ``None`` is orthographic.
    """

    center: tuple[float, float, float]
    scale: float
    yaw_degrees: float = 0.0
    pitch_degrees: float = 0.0
    fov_degrees: float | None = None

    def __post_init__(self) -> None:
        center = tuple(float(c) for c in np.asarray(self.center, dtype=np.float64).reshape(-1))
        if len(center) != 3 or not all(math.isfinite(c) for c in center):
            raise VoxmeshError(f"Camera center {self.center!r} must be three finite numbers (metres).")
        object.__setattr__(self, "center", center)
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise VoxmeshError(f"Camera scale {self.scale!r} must be a positive number of pixels per metre.")
        if self.fov_degrees is not None and not (0.0 < self.fov_degrees < 179.0):
            raise VoxmeshError(f"Camera fov_degrees {self.fov_degrees!r} must lie between 0 and 179.")

    @classmethod
    def fit(
        cls,
        vertices: np.ndarray,
        width: int,
        height: int,
        *,
        yaw_degrees: float = 0.0,
        pitch_degrees: float = 0.0,
        fov_degrees: float | None = None,
        margin: float = 0.08,
    ) -> "Camera":
        """The camera that frames ``vertices`` ``[V, 3]`` (or ``[T, V, 3]``, all frames)
        seen at the given angles, leaving ``margin`` (fraction of the image) on each side.

        Fit it once, on the template or the first frame, and reuse it for a sequence:
        a camera refitted every frame would follow the motion and hide it.
        """
        points = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        points = points[np.all(np.isfinite(points), axis=1)]
        if len(points) == 0:
            raise VoxmeshError("Cannot fit a camera to a mesh with no finite vertices.")
        if not (0.0 <= margin < 0.5):
            raise VoxmeshError(f"Camera margin {margin!r} must lie in [0, 0.5).")
        lo, hi = points.min(axis=0), points.max(axis=0)
        center = (lo + hi) / 2.0
        view = (points - center) @ _rotation(yaw_degrees, pitch_degrees).T
        extent_x = max(float(np.ptp(view[:, 0])), 1e-9)
        extent_y = max(float(np.ptp(view[:, 1])), 1e-9)
        # Centre the rotated box too, so a turned head stays in the middle of the frame.
        mid = (view.min(axis=0) + view.max(axis=0)) / 2.0
        mid[2] = 0.0
        center = center + _rotation(yaw_degrees, pitch_degrees).T @ mid
        scale = (1.0 - 2.0 * margin) * min(width / extent_x, height / extent_y)
        return cls(tuple(center), float(scale), float(yaw_degrees), float(pitch_degrees), fov_degrees)

    def rotation(self) -> np.ndarray:
        """World-to-camera rotation, float64 ``[3, 3]``."""
        return _rotation(self.yaw_degrees, self.pitch_degrees)

    def focal_and_distance(self, height: int) -> tuple[float, float]:
        """Perspective focal length (pixels) and camera distance from ``center``
        (metres); ``(0, 0)`` for an orthographic camera."""
        if self.fov_degrees is None:
            return 0.0, 0.0
        focal = (height / 2.0) / math.tan(math.radians(self.fov_degrees) / 2.0)
        return focal, focal / self.scale


def _rotation(yaw_degrees: float, pitch_degrees: float) -> np.ndarray:
    """Yaw about +y, then pitch about +x (right-handed), float64 ``[3, 3]``."""
    yaw, pitch = math.radians(yaw_degrees), math.radians(pitch_degrees)
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rot_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rot_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return rot_pitch @ rot_yaw


# --------------------------------------------------------------------------- lighting


@dataclass(frozen=True)
class Lighting:
    """Soft studio lighting, fixed to the camera (directions point toward the lights,
    in camera space: x right, y up, z toward the viewer).

    A key light from the upper left, a weaker fill from the right, a hemispheric
    ambient term (slightly brighter from above) and a gentle Blinn-Phong highlight of
    the key light. Intensities apply to linear light.
    """

    key_direction: tuple[float, float, float] = (-0.45, 0.55, 0.70)
    key_intensity: float = 0.80
    fill_direction: tuple[float, float, float] = (0.65, 0.05, 0.75)
    fill_intensity: float = 0.28
    ambient_sky: float = 0.24
    ambient_ground: float = 0.12
    specular: float = 0.10
    shininess: float = 24.0

    def as_array(self) -> np.ndarray:
        """Packed parameters for the shading kernel, float64 ``[15]``."""
        key = np.asarray(self.key_direction, dtype=np.float64)
        fill = np.asarray(self.fill_direction, dtype=np.float64)
        key = key / max(np.linalg.norm(key), 1e-12)
        fill = fill / max(np.linalg.norm(fill), 1e-12)
        half = key + np.array([0.0, 0.0, 1.0])  # Blinn half vector for a distant viewer
        half = half / max(np.linalg.norm(half), 1e-12)
        return np.array(
            [*key, self.key_intensity, *fill, self.fill_intensity,
             self.ambient_sky, self.ambient_ground, self.specular, self.shininess,
             *half],
            dtype=np.float64,
        )


def _gamma_table() -> np.ndarray:
    """Linear light in [0, 1] -> sRGB byte, uint8 ``[_LUT_SIZE]``."""
    linear = np.linspace(0.0, 1.0, _LUT_SIZE)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(np.round(encoded * 255.0), 0, 255).astype(np.uint8)


def _srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    colors = np.clip(colors, 0.0, 1.0)
    return np.where(colors <= 0.04045, colors / 12.92, ((colors + 0.055) / 1.055) ** 2.4)


def _as_unit_colors(colors: np.ndarray | Sequence[float], what: str) -> np.ndarray:
    """Colours as float in [0, 1]: uint8 arrays are divided by 255, floats are kept."""
    array = np.asarray(colors)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise VoxmeshError(f"{what} contains NaN or infinite values; pass finite colours in [0, 1].")
    return array


# --------------------------------------------------------------------------- kernels


@njit(cache=True)
def _prepare_vertices(vertices, faces, rotation, center, width, height, scale, focal, distance,
                      normals, screen_x, screen_y, depth, fixed_x, fixed_y, valid,
                      tri_flip, tri_row_min, tri_row_max):
    """Stage 1 of a frame.

    vertices float64 [V, 3] (world); faces int64 [F, 3]. Writes: normals [V, 3] (camera
    space, unit), screen_x/screen_y/depth [V] (depth grows toward the viewer: z for
    orthographic, 1/distance for perspective), fixed_x/fixed_y int64 [V], valid bool [V],
    tri_flip float64 [F] (+1 front-facing, -1 seen from behind, 0 skipped) and the
    triangle's pixel-row range tri_row_min/max int64 [F] (empty when max < min).
    """
    n_vertices = vertices.shape[0]
    n_faces = faces.shape[0]
    # Area-weighted normals: the unnormalised cross product is twice the triangle area.
    for v in range(n_vertices):
        normals[v, 0] = 0.0
        normals[v, 1] = 0.0
        normals[v, 2] = 0.0
    for f in range(n_faces):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        e1x = vertices[b, 0] - vertices[a, 0]
        e1y = vertices[b, 1] - vertices[a, 1]
        e1z = vertices[b, 2] - vertices[a, 2]
        e2x = vertices[c, 0] - vertices[a, 0]
        e2y = vertices[c, 1] - vertices[a, 1]
        e2z = vertices[c, 2] - vertices[a, 2]
        nx = e1y * e2z - e1z * e2y
        ny = e1z * e2x - e1x * e2z
        nz = e1x * e2y - e1y * e2x
        for k in range(3):
            i = faces[f, k]
            normals[i, 0] += nx
            normals[i, 1] += ny
            normals[i, 2] += nz

    half_w = width * 0.5
    half_h = height * 0.5
    perspective = focal > 0.0
    for v in range(n_vertices):
        # Normal into camera space, unit length.
        nx, ny, nz = normals[v, 0], normals[v, 1], normals[v, 2]
        rx = rotation[0, 0] * nx + rotation[0, 1] * ny + rotation[0, 2] * nz
        ry = rotation[1, 0] * nx + rotation[1, 1] * ny + rotation[1, 2] * nz
        rz = rotation[2, 0] * nx + rotation[2, 1] * ny + rotation[2, 2] * nz
        length = math.sqrt(rx * rx + ry * ry + rz * rz)
        if length > 0.0:
            rx /= length
            ry /= length
            rz /= length
        normals[v, 0] = rx
        normals[v, 1] = ry
        normals[v, 2] = rz
        # Position into camera space, then onto the image.
        px = vertices[v, 0] - center[0]
        py = vertices[v, 1] - center[1]
        pz = vertices[v, 2] - center[2]
        cx = rotation[0, 0] * px + rotation[0, 1] * py + rotation[0, 2] * pz
        cy = rotation[1, 0] * px + rotation[1, 1] * py + rotation[1, 2] * pz
        cz = rotation[2, 0] * px + rotation[2, 1] * py + rotation[2, 2] * pz
        ok = math.isfinite(cx) and math.isfinite(cy) and math.isfinite(cz)
        if perspective:
            w = distance - cz
            if w < _NEAR:
                ok = False
                w = _NEAR
            sx = half_w + focal * cx / w
            sy = half_h - focal * cy / w
            d = 1.0 / w
        else:
            sx = half_w + scale * cx
            sy = half_h - scale * cy
            d = cz
        if not ok:
            sx = 0.0
            sy = 0.0
            d = 0.0
        sx = min(max(sx, -_COORD_LIMIT), _COORD_LIMIT)
        sy = min(max(sy, -_COORD_LIMIT), _COORD_LIMIT)
        screen_x[v] = sx
        screen_y[v] = sy
        depth[v] = d
        fixed_x[v] = np.int64(round(sx * _SUBPIXEL))
        fixed_y[v] = np.int64(round(sy * _SUBPIXEL))
        valid[v] = ok

    half = _SUBPIXEL // 2
    for f in range(n_faces):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        tri_row_min[f] = 0
        tri_row_max[f] = -1
        tri_flip[f] = 0.0
        if not (valid[a] and valid[b] and valid[c]):
            continue
        # Signed area in y-down pixel space: positive for a triangle that is
        # counter-clockwise seen from the camera, i.e. front-facing.
        area = (fixed_x[c] - fixed_x[a]) * (fixed_y[b] - fixed_y[a]) - (fixed_y[c] - fixed_y[a]) * (fixed_x[b] - fixed_x[a])
        if area == 0:
            continue
        tri_flip[f] = 1.0 if area > 0 else -1.0
        y_lo = min(fixed_y[a], min(fixed_y[b], fixed_y[c]))
        y_hi = max(fixed_y[a], max(fixed_y[b], fixed_y[c]))
        # Rows whose pixel centre (row * SUB + SUB/2) lies inside [y_lo, y_hi].
        row_min = max(0, (y_lo - half + _SUBPIXEL - 1) // _SUBPIXEL)
        row_max = min(height - 1, (y_hi - half) // _SUBPIXEL)
        tri_row_min[f] = row_min
        tri_row_max[f] = row_max


@njit(cache=True)
def _is_top_left(dx, dy):
    # For our orientation (positive area, y down) a left edge goes down the screen and
    # a top edge is horizontal going left; pixels exactly on such edges are inside.
    return dy > 0 or (dy == 0 and dx < 0)


@njit(cache=True, parallel=True)
def _rasterize(faces, fixed_x, fixed_y, depth, tri_flip, tri_row_min, tri_row_max, n_bands,
               zbuffer, tri_id, bary1, bary2):
    """Stage 2: z-buffered coverage.

    Writes per pixel (all [H, W]): zbuffer float64 (larger is nearer), tri_id int32
    (-1 for background) and the barycentric weights of the triangle's 2nd and 3rd
    vertex (in ``faces`` order). Each band of rows is one parallel task.
    """
    height, width = zbuffer.shape
    n_faces = faces.shape[0]
    for band in prange(n_bands):
        band_lo = band * height // n_bands
        band_hi = (band + 1) * height // n_bands - 1
        for y in range(band_lo, band_hi + 1):
            for x in range(width):
                zbuffer[y, x] = -np.inf
                tri_id[y, x] = -1
        for f in range(n_faces):
            row_min = max(tri_row_min[f], band_lo)
            row_max = min(tri_row_max[f], band_hi)
            if row_max < row_min:
                continue
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            swapped = tri_flip[f] < 0.0
            if swapped:
                # Make every triangle positively oriented; remember to swap weights back.
                i1, i2 = i2, i1
            x0, y0 = fixed_x[i0], fixed_y[i0]
            x1, y1 = fixed_x[i1], fixed_y[i1]
            x2, y2 = fixed_x[i2], fixed_y[i2]
            area = (x2 - x0) * (y1 - y0) - (y2 - y0) * (x1 - x0)
            inv_area = 1.0 / area
            z0, z1, z2 = depth[i0], depth[i1], depth[i2]

            half = _SUBPIXEL // 2
            col_min = max(0, (min(x0, min(x1, x2)) - half + _SUBPIXEL - 1) // _SUBPIXEL)
            col_max = min(width - 1, (max(x0, max(x1, x2)) - half) // _SUBPIXEL)
            if col_max < col_min:
                continue

            # Edge function of edge (a -> b) at p: (p.x - a.x)(b.y - a.y) - (p.y - a.y)(b.x - a.x);
            # w0 uses edge 1->2 (weight of vertex 0), w1 edge 2->0, w2 edge 0->1.
            px = col_min * _SUBPIXEL + half
            py = row_min * _SUBPIXEL + half
            bias0 = 0 if _is_top_left(x2 - x1, y2 - y1) else -1
            bias1 = 0 if _is_top_left(x0 - x2, y0 - y2) else -1
            bias2 = 0 if _is_top_left(x1 - x0, y1 - y0) else -1
            row_w0 = (px - x1) * (y2 - y1) - (py - y1) * (x2 - x1) + bias0
            row_w1 = (px - x2) * (y0 - y2) - (py - y2) * (x0 - x2) + bias1
            row_w2 = (px - x0) * (y1 - y0) - (py - y0) * (x1 - x0) + bias2
            step_x0 = (y2 - y1) * _SUBPIXEL
            step_x1 = (y0 - y2) * _SUBPIXEL
            step_x2 = (y1 - y0) * _SUBPIXEL
            step_y0 = -(x2 - x1) * _SUBPIXEL
            step_y1 = -(x0 - x2) * _SUBPIXEL
            step_y2 = -(x1 - x0) * _SUBPIXEL
            for y in range(row_min, row_max + 1):
                w0, w1, w2 = row_w0, row_w1, row_w2
                for x in range(col_min, col_max + 1):
                    if (w0 | w1 | w2) >= 0:  # all three non-negative: inside
                        b1 = w1 * inv_area
                        b2 = w2 * inv_area
                        z = z0 + b1 * (z1 - z0) + b2 * (z2 - z0)
                        if z > zbuffer[y, x]:
                            zbuffer[y, x] = z
                            tri_id[y, x] = f
                            if swapped:
                                b1, b2 = b2, b1
                            bary1[y, x] = b1
                            bary2[y, x] = b2
                    w0 += step_x0
                    w1 += step_x1
                    w2 += step_x2
                row_w0 += step_y0
                row_w1 += step_y1
                row_w2 += step_y2


@njit(cache=True, parallel=True)
def _shade(faces, normals, albedo, tri_flip, tri_id, bary1, bary2, light, background, gamma_lut,
           image):
    """Stage 3: light the visible surface.

    normals float64 [V, 3] camera-space unit normals; albedo float64 [V, 3] linear colours;
    light float64 [15] (see ``Lighting.as_array``); background uint8 [3]; gamma_lut uint8;
    image uint8 [H, W, 3] is written in place.
    """
    height, width = tri_id.shape
    lut_top = gamma_lut.shape[0] - 1
    kx, ky, kz, k_int = light[0], light[1], light[2], light[3]
    fx, fy, fz, f_int = light[4], light[5], light[6], light[7]
    sky, ground, spec, shininess = light[8], light[9], light[10], light[11]
    hx, hy, hz = light[12], light[13], light[14]
    for y in prange(height):
        for x in range(width):
            f = tri_id[y, x]
            if f < 0:
                image[y, x, 0] = background[0]
                image[y, x, 1] = background[1]
                image[y, x, 2] = background[2]
                continue
            b1 = bary1[y, x]
            b2 = bary2[y, x]
            b0 = 1.0 - b1 - b2
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            # Two-sided lighting: the inside of a surface (mouth interior) is lit as if
            # its normal faced the camera.
            flip = tri_flip[f]
            nx = flip * (b0 * normals[i0, 0] + b1 * normals[i1, 0] + b2 * normals[i2, 0])
            ny = flip * (b0 * normals[i0, 1] + b1 * normals[i1, 1] + b2 * normals[i2, 1])
            nz = flip * (b0 * normals[i0, 2] + b1 * normals[i1, 2] + b2 * normals[i2, 2])
            length = math.sqrt(nx * nx + ny * ny + nz * nz)
            if length > 0.0:
                nx /= length
                ny /= length
                nz /= length
            key = max(0.0, nx * kx + ny * ky + nz * kz)
            fill = max(0.0, nx * fx + ny * fy + nz * fz)
            up = 0.5 + 0.5 * ny
            diffuse = ground + (sky - ground) * up + k_int * key + f_int * fill
            highlight = 0.0
            if key > 0.0:
                n_dot_h = nx * hx + ny * hy + nz * hz
                if n_dot_h > 0.0:
                    highlight = spec * n_dot_h ** shininess
            for ch in range(3):
                value = (b0 * albedo[i0, ch] + b1 * albedo[i1, ch] + b2 * albedo[i2, ch]) * diffuse + highlight
                index = int(value * lut_top + 0.5)
                if index < 0:
                    index = 0
                elif index > lut_top:
                    index = lut_top
                image[y, x, ch] = gamma_lut[index]


@njit(cache=True, parallel=True)
def _downsample(large, factor, image):
    """Box-filter ``large`` uint8 [H*factor, W*factor, 3] into ``image`` uint8 [H, W, 3]."""
    height, width = image.shape[0], image.shape[1]
    norm = factor * factor
    for y in prange(height):
        for x in range(width):
            for ch in range(3):
                total = 0
                for dy in range(factor):
                    for dx in range(factor):
                        total += large[y * factor + dy, x * factor + dx, ch]
                image[y, x, ch] = (total + norm // 2) // norm


# --------------------------------------------------------------------------- renderer


class Renderer:
    """Renders frames of one mesh topology with one fixed camera.

    faces: int ``[F, 3]`` triangle indices. camera: an explicit ``Camera``; when
    ``None`` the camera is fitted once (``Camera.fit``) to ``reference_vertices`` or,
    failing that, to the first frame rendered, and then kept for every later frame so
    motion stays visible. yaw_degrees / pitch_degrees / fov_degrees / margin only
    shape that fitted camera. background: sRGB bytes. base_color: sRGB albedo in
    [0, 1] used where no per-vertex colours are given; vertex_colors: default per-vertex
    albedo ``[V, 3]`` (float in [0, 1] or uint8). supersample: render at this many times
    the resolution and box-filter down (antialiasing, 2 is a good value for figures).
    """

    def __init__(
        self,
        faces: np.ndarray,
        width: int = 512,
        height: int = 512,
        camera: Camera | None = None,
        *,
        reference_vertices: np.ndarray | None = None,
        yaw_degrees: float | None = None,
        pitch_degrees: float | None = None,
        fov_degrees: float | None = None,
        margin: float = 0.08,
        background: Sequence[int] = DEFAULT_BACKGROUND,
        base_color: Sequence[float] = SKIN_COLOR,
        vertex_colors: np.ndarray | None = None,
        lighting: Lighting | None = None,
        supersample: int = 1,
    ) -> None:
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise VoxmeshError(f"Renderer faces have shape {faces.shape} and dtype {faces.dtype}; expected integer [F, 3] triangles.")
        if faces.size and faces.min() < 0:
            raise VoxmeshError("Renderer faces contain negative vertex indices; pass 0-based indices.")
        if int(width) < 1 or int(height) < 1:
            raise VoxmeshError(f"Render size {width}x{height} must be at least 1x1 pixels.")
        if int(supersample) < 1:
            raise VoxmeshError(f"supersample {supersample!r} must be a positive integer.")
        if camera is not None and (yaw_degrees is not None or pitch_degrees is not None or fov_degrees is not None):
            raise VoxmeshError("Pass yaw, pitch and field of view inside the Camera when giving an explicit camera.")
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)
        self.max_index = int(self.faces.max()) if self.faces.size else -1
        self.width = int(width)
        self.height = int(height)
        self.supersample = int(supersample)
        self.yaw_degrees = float(yaw_degrees or 0.0)
        self.pitch_degrees = float(pitch_degrees or 0.0)
        self.fov_degrees = fov_degrees
        self.margin = float(margin)
        self.lighting = lighting or Lighting()
        self._light = self.lighting.as_array()
        background = np.asarray(background)
        if background.shape != (3,):
            raise VoxmeshError(f"background {background.tolist()!r} must be three sRGB values.")
        if background.dtype != np.uint8 and np.issubdtype(background.dtype, np.floating) and background.max() <= 1.0:
            background = background * 255.0  # float colours in [0, 1]
        self.background = np.clip(np.round(background.astype(np.float64)), 0, 255).astype(np.uint8)
        base = _as_unit_colors(base_color, "base_color").reshape(-1)
        if base.shape != (3,):
            raise VoxmeshError(f"base_color {base_color!r} must be three values in [0, 1].")
        self.base_color = base
        self.vertex_colors = vertex_colors
        self.camera = camera
        if camera is None and reference_vertices is not None:
            self.camera = self._fit(reference_vertices)
        self._gamma_lut = _gamma_table()
        self._buffers: dict[str, np.ndarray] = {}
        self._albedo_cache: tuple[int, np.ndarray] | None = None

    # ----------------------------------------------------------------- public

    def render(self, vertices: np.ndarray, vertex_colors: np.ndarray | None = None,
               out: np.ndarray | None = None) -> np.ndarray:
        """One frame. vertices ``[V, 3]`` (metres); vertex_colors ``[V, 3]`` overrides the
        renderer's colours for this frame; out: optional uint8 ``[H, W, 3]`` to fill.
        Returns uint8 ``[H, W, 3]``."""
        vertices = self._check_vertices(vertices)
        if self.camera is None:
            self.camera = self._fit(vertices)
        albedo = self._albedo(len(vertices), vertex_colors)
        if out is None:
            out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        elif out.shape != (self.height, self.width, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise VoxmeshError(f"out has shape {out.shape} and dtype {out.dtype}; expected contiguous uint8 {(self.height, self.width, 3)}.")
        self._render_into(vertices, albedo, out)
        return out

    def iter_frames(self, vertices: np.ndarray, vertex_colors: np.ndarray | None = None,
                    progress: bool = False) -> Iterator[np.ndarray]:
        """Yield uint8 ``[H, W, 3]`` frames of vertices ``[T, V, 3]`` one by one (each a
        new array), for streaming into a video writer. vertex_colors: ``[V, 3]`` for all
        frames or ``[T, V, 3]``."""
        vertices = np.asarray(vertices)
        if vertices.ndim != 3 or vertices.shape[-1] != 3:
            raise VoxmeshError(f"A vertex sequence has shape {vertices.shape}; expected [T, V, 3].")
        per_frame_colors = vertex_colors is not None and np.ndim(vertex_colors) == 3
        if per_frame_colors and len(vertex_colors) != len(vertices):
            raise VoxmeshError(f"vertex_colors has {len(vertex_colors)} frames but the sequence has {len(vertices)}; pass one [V, 3] array or one per frame.")
        from tqdm.auto import tqdm

        for t in tqdm(range(len(vertices)), desc="render", unit="frame", disable=not progress):
            colors = vertex_colors[t] if per_frame_colors else vertex_colors
            yield self.render(vertices[t], colors)

    def render_sequence(self, vertices: np.ndarray, vertex_colors: np.ndarray | None = None,
                        progress: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """All frames of vertices ``[T, V, 3]`` with one camera; returns uint8
        ``[T, H, W, 3]`` (written into ``out`` when given)."""
        vertices = np.asarray(vertices)
        if vertices.ndim != 3 or vertices.shape[-1] != 3:
            raise VoxmeshError(f"A vertex sequence has shape {vertices.shape}; expected [T, V, 3].")
        n_frames = len(vertices)
        shape = (n_frames, self.height, self.width, 3)
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise VoxmeshError(f"out has shape {out.shape} and dtype {out.dtype}; expected contiguous uint8 {shape}.")
        per_frame_colors = vertex_colors is not None and np.ndim(vertex_colors) == 3
        if per_frame_colors and len(vertex_colors) != n_frames:
            raise VoxmeshError(f"vertex_colors has {len(vertex_colors)} frames but the sequence has {n_frames}; pass one [V, 3] array or one per frame.")
        from tqdm.auto import tqdm

        for t in tqdm(range(n_frames), desc="render", unit="frame", disable=not progress):
            colors = vertex_colors[t] if per_frame_colors else vertex_colors
            self.render(vertices[t], colors, out=out[t])
        return out

    # ----------------------------------------------------------------- internals

    def _fit(self, vertices: np.ndarray) -> Camera:
        return Camera.fit(vertices, self.width, self.height, yaw_degrees=self.yaw_degrees,
                          pitch_degrees=self.pitch_degrees, fov_degrees=self.fov_degrees,
                          margin=self.margin)

    def _check_vertices(self, vertices: np.ndarray) -> np.ndarray:
        vertices = np.asarray(vertices)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise VoxmeshError(f"Frame vertices have shape {vertices.shape}; expected [V, 3].")
        if vertices.shape[0] <= self.max_index:
            raise VoxmeshError(f"The faces index vertex {self.max_index} but the frame has {vertices.shape[0]} vertices; render with the faces of this mesh.")
        return np.ascontiguousarray(vertices, dtype=np.float64)

    def _albedo(self, n_vertices: int, vertex_colors: np.ndarray | None) -> np.ndarray:
        """Linear albedo float64 ``[V, 3]`` from per-call, default or base colours."""
        colors = vertex_colors if vertex_colors is not None else self.vertex_colors
        if colors is None:
            # The uniform base colour is the common case: build it once per vertex count.
            if self._albedo_cache is None or self._albedo_cache[0] != n_vertices:
                linear = _srgb_to_linear(self.base_color)
                self._albedo_cache = (n_vertices, np.ascontiguousarray(np.broadcast_to(linear, (n_vertices, 3))))
            return self._albedo_cache[1]
        colors = _as_unit_colors(colors, "vertex_colors")
        if colors.shape != (n_vertices, 3):
            raise VoxmeshError(f"vertex_colors has shape {colors.shape}; expected [{n_vertices}, 3] to match the mesh.")
        return np.ascontiguousarray(_srgb_to_linear(colors))

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A scratch array reused across frames (no allocation per frame)."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape:
            buffer = np.empty(shape, dtype=dtype)
            self._buffers[name] = buffer
        return buffer

    def _render_into(self, vertices: np.ndarray, albedo: np.ndarray, out: np.ndarray) -> None:
        camera = self.camera
        assert camera is not None
        factor = self.supersample
        width, height = self.width * factor, self.height * factor
        n_vertices, n_faces = len(vertices), len(self.faces)
        focal, distance = camera.focal_and_distance(height)
        normals = self._buffer("normals", (n_vertices, 3), np.float64)
        screen_x = self._buffer("screen_x", (n_vertices,), np.float64)
        screen_y = self._buffer("screen_y", (n_vertices,), np.float64)
        depth = self._buffer("depth", (n_vertices,), np.float64)
        fixed_x = self._buffer("fixed_x", (n_vertices,), np.int64)
        fixed_y = self._buffer("fixed_y", (n_vertices,), np.int64)
        valid = self._buffer("valid", (n_vertices,), np.bool_)
        tri_flip = self._buffer("tri_flip", (n_faces,), np.float64)
        tri_row_min = self._buffer("tri_row_min", (n_faces,), np.int64)
        tri_row_max = self._buffer("tri_row_max", (n_faces,), np.int64)
        zbuffer = self._buffer("zbuffer", (height, width), np.float64)
        tri_id = self._buffer("tri_id", (height, width), np.int32)
        bary1 = self._buffer("bary1", (height, width), np.float64)
        bary2 = self._buffer("bary2", (height, width), np.float64)
        center = np.asarray(camera.center, dtype=np.float64)
        # Scale in pixels of the (possibly supersampled) target.
        _prepare_vertices(vertices, self.faces, camera.rotation(), center, width, height,
                          camera.scale * factor, focal, distance, normals, screen_x, screen_y,
                          depth, fixed_x, fixed_y, valid, tri_flip, tri_row_min, tri_row_max)
        # Inside the guard: numba.get_num_threads() starts numba's OpenMP layer, which sets the
        # thread count torch shares.
        with _torch_threads_kept():
            # A few bands a thread balance the load: the face covers the middle rows only.
            n_bands = max(1, min(height, 4 * numba.get_num_threads()))
            _rasterize(self.faces, fixed_x, fixed_y, depth, tri_flip, tri_row_min, tri_row_max,
                       n_bands, zbuffer, tri_id, bary1, bary2)
            target = out if factor == 1 else self._buffer("large", (height, width, 3), np.uint8)
            _shade(self.faces, normals, albedo, tri_flip, tri_id, bary1, bary2, self._light,
                   self.background, self._gamma_lut, target)
            if factor > 1:  # parallel too: inside the guard
                _downsample(target, factor, out)


# --------------------------------------------------------------------------- functions

class _torch_threads_kept:
    """numba's OpenMP threading layer sets the OpenMP thread count that torch shares
    (one libgomp): after a parallel kernel torch would run with numba's thread count,
    overriding the user's torch.set_num_threads / OMP_NUM_THREADS. Restore it."""

    def __enter__(self):
        import sys

        torch = sys.modules.get("torch")  # only when torch is in use: no import for rendering alone
        self.torch = torch
        self.threads = torch.get_num_threads() if torch is not None else None
        return self

    def __exit__(self, *exc):
        if self.torch is not None and self.torch.get_num_threads() != self.threads:
            self.torch.set_num_threads(self.threads)
        return False




def render_frame(
    vertices: np.ndarray,
    faces: np.ndarray,
    width: int = 512,
    height: int = 512,
    camera: Camera | None = None,
    *,
    vertex_colors: np.ndarray | None = None,
    **options,
) -> np.ndarray:
    """Render one mesh, vertices ``[V, 3]`` and faces ``[F, 3]``, to uint8 ``[H, W, 3]``.

    Without a camera the view is fitted to this mesh. ``options`` are the keyword
    arguments of ``Renderer`` (yaw_degrees, fov_degrees, background, base_color,
    lighting, supersample, ...). For many frames build one ``Renderer`` instead.
    """
    renderer = Renderer(faces, width, height, camera, **options)
    return renderer.render(vertices, vertex_colors)


def render_sequence(
    vertices: np.ndarray,
    faces: np.ndarray,
    width: int = 512,
    height: int = 512,
    camera: Camera | None = None,
    *,
    reference_vertices: np.ndarray | None = None,
    vertex_colors: np.ndarray | None = None,
    progress: bool = False,
    **options,
) -> np.ndarray:
    """Render vertices ``[T, V, 3]`` with faces ``[F, 3]`` to uint8 ``[T, H, W, 3]``.

    One camera serves every frame: the given one, or one fitted to
    ``reference_vertices`` (the template, ``[V, 3]``) or else to the first frame.
    vertex_colors: ``[V, 3]`` or ``[T, V, 3]``. ``options`` go to ``Renderer``.
    """
    renderer = Renderer(faces, width, height, camera, reference_vertices=reference_vertices, **options)
    return renderer.render_sequence(vertices, vertex_colors, progress=progress)


# --------------------------------------------------------------------------- colours

# Colour maps as anchor points (position in [0, 1], sRGB in [0, 1]), interpolated linearly.
_COLORMAPS: dict[str, np.ndarray] = {
    # Pale at zero error, through yellow and orange, to deep red: zero error stays
    # close to skin so the eye goes to the large errors.
    "heat": np.array([
        [0.00, 0.96, 0.96, 0.93],
        [0.25, 0.99, 0.88, 0.45],
        [0.50, 0.99, 0.60, 0.20],
        [0.75, 0.89, 0.24, 0.13],
        [1.00, 0.55, 0.03, 0.08],
    ]),
    # The classic blue-cyan-yellow-red map most face-animation papers use.
    "jet": np.array([
        [0.000, 0.0, 0.0, 0.5],
        [0.125, 0.0, 0.0, 1.0],
        [0.375, 0.0, 1.0, 1.0],
        [0.625, 1.0, 1.0, 0.0],
        [0.875, 1.0, 0.0, 0.0],
        [1.000, 0.5, 0.0, 0.0],
    ]),
    # A perceptually ordered dark-blue-to-yellow map (anchors sampled from viridis).
    "viridis": np.array([
        [0.00, 0.267, 0.005, 0.329],
        [0.25, 0.230, 0.322, 0.546],
        [0.50, 0.128, 0.567, 0.551],
        [0.75, 0.369, 0.789, 0.383],
        [1.00, 0.993, 0.906, 0.144],
    ]),
}


def error_colors(values: np.ndarray, vmax: float | None = None, *, vmin: float = 0.0,
                 colormap: str = "heat") -> np.ndarray:
    """Per-vertex colours for a heat map of ``values`` ``[V]`` (or ``[T, V]``).

    Values are mapped linearly from ``vmin`` to ``vmax`` (default: their maximum) and
    clipped; returns float32 ``[V, 3]`` (or ``[T, V, 3]``) sRGB in [0, 1], ready for
    ``vertex_colors``. Use the same ``vmax`` for every method compared in a figure.
    colormap: "heat" (pale to red), "jet" or "viridis". NaN counts as ``vmin``.
    """
    if colormap not in _COLORMAPS:
        raise VoxmeshError(f"Unknown colormap {colormap!r}; choose one of {sorted(_COLORMAPS)}.")
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=vmin)
    if vmax is None:
        vmax = float(values.max()) if values.size else 1.0
    span = float(vmax) - float(vmin)
    if not math.isfinite(span):
        raise VoxmeshError(f"error_colors range [{vmin}, {vmax}] must be finite.")
    unit = np.clip((values - vmin) / span, 0.0, 1.0) if span > 0 else np.zeros_like(values)
    anchors = _COLORMAPS[colormap]
    colors = np.stack([np.interp(unit, anchors[:, 0], anchors[:, 1 + ch]) for ch in range(3)], axis=-1)
    return colors.astype(np.float32)

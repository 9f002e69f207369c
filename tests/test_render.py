"""The software renderer: framing, z-buffer, lighting, fixed camera, yaw, colours,
error heat maps and contact sheets."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from voxmesh.errors import VoxmeshError
from voxmesh.render import (
    Camera,
    Lighting,
    Renderer,
    contact_sheet,
    error_colors,
    render_frame,
    render_sequence,
)

BACKGROUND = (242, 242, 242)
SIZE = 128


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray]:
    """A head-sized icosphere (radius 0.1 m): vertices float64 [V, 3], faces [F, 3]."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def is_background(pixel: np.ndarray) -> bool:
    return tuple(int(c) for c in pixel) == BACKGROUND


def foreground_mask(image: np.ndarray) -> np.ndarray:
    return np.any(image != np.array(BACKGROUND, dtype=np.uint8), axis=-1)


def foreground_centroid(image: np.ndarray) -> np.ndarray:
    """(x, y) centre of the non-background pixels."""
    ys, xs = np.nonzero(foreground_mask(image))
    return np.array([xs.mean(), ys.mean()])


def quad(z: float, half: float, normal_tilt_y: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A square facing +z at depth z (two counter-clockwise triangles), optionally
    tilted about the x axis by ``normal_tilt_y`` radians (positive turns it upward)."""
    vertices = np.array([[-half, -half, 0.0], [half, -half, 0.0], [half, half, 0.0], [-half, half, 0.0]])
    c, s = np.cos(normal_tilt_y), np.sin(normal_tilt_y)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])  # normal (0,0,1) -> (0, s, c)
    vertices = vertices @ tilt.T
    vertices[:, 2] += z
    return vertices, np.array([[0, 1, 2], [0, 2, 3]])


def test_shape_dtype_centre_lit_corners_background(sphere):
    vertices, faces = sphere
    image = render_frame(vertices, faces, width=SIZE + 32, height=SIZE)
    assert image.shape == (SIZE, SIZE + 32, 3)
    assert image.dtype == np.uint8
    assert not is_background(image[SIZE // 2, (SIZE + 32) // 2])
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert is_background(image[y, x])
    # Fitted framing: the sphere fills the image minus the margin (8 % a side).
    ys, xs = np.nonzero(foreground_mask(image))
    assert ys.max() - ys.min() + 1 == pytest.approx(SIZE * 0.84, abs=3)


def test_two_triangles_of_a_quad_leave_no_crack():
    vertices, faces = quad(0.0, 0.05)
    camera = Camera(center=(0.0, 0.0, 0.0), scale=SIZE / 0.2)
    image = render_frame(vertices, faces, SIZE, SIZE, camera)
    mask = foreground_mask(image)
    # The square spans 0.1 m = SIZE / 2 pixels, centred; every pixel inside is covered.
    inner = mask[SIZE // 4 + 1: 3 * SIZE // 4 - 1, SIZE // 4 + 1: 3 * SIZE // 4 - 1]
    assert inner.all()
    assert mask.sum() == pytest.approx((SIZE // 2) ** 2, rel=0.03)


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_quad_occludes_farther(near_first):
    near_v, near_f = quad(0.05, 0.03)
    far_v, far_f = quad(-0.05, 0.06)
    near_colors = np.tile([[1.0, 0.0, 0.0]], (4, 1))
    far_colors = np.tile([[0.0, 0.0, 1.0]], (4, 1))
    parts = [(near_v, near_f, near_colors), (far_v, far_f, far_colors)]
    if not near_first:
        parts.reverse()
    vertices = np.concatenate([p[0] for p in parts])
    faces = np.concatenate([parts[0][1], parts[1][1] + 4])
    colors = np.concatenate([p[2] for p in parts])
    camera = Camera(center=(0.0, 0.0, 0.0), scale=SIZE / 0.2)
    image = render_frame(vertices, faces, SIZE, SIZE, camera, vertex_colors=colors).astype(int)
    centre = image[SIZE // 2, SIZE // 2]
    assert centre[0] > centre[2] + 150  # red: the near quad (plus a little white highlight)
    side = image[SIZE // 2, SIZE // 2 + int(0.045 * SIZE / 0.2)]  # only the far quad
    assert side[2] > side[0] + 100


def test_face_toward_key_light_is_brighter(sphere):
    camera = Camera(center=(0.0, 0.0, 0.0), scale=SIZE / 0.2)
    # The default key light comes from above: a quad tilted up faces it more.
    up_v, faces = quad(0.0, 0.05, normal_tilt_y=0.5)
    down_v, _ = quad(0.0, 0.05, normal_tilt_y=-0.5)
    up = render_frame(up_v, faces, SIZE, SIZE, camera).astype(int)[SIZE // 2, SIZE // 2]
    down = render_frame(down_v, faces, SIZE, SIZE, camera).astype(int)[SIZE // 2, SIZE // 2]
    assert up.sum() > down.sum() + 30
    # On a sphere the upper-left (key side) is brighter than the lower-right.
    vertices, sphere_faces = sphere
    image = render_frame(vertices, sphere_faces, SIZE, SIZE).astype(int)
    q = SIZE // 3
    assert image[q, q].sum() > image[SIZE - q, SIZE - q].sum() + 60


def test_back_faces_are_drawn_and_lit():
    vertices, faces = quad(0.0, 0.05)
    camera = Camera(center=(0.0, 0.0, 0.0), scale=SIZE / 0.2)
    front = render_frame(vertices, faces, SIZE, SIZE, camera)
    back = render_frame(vertices, faces[:, ::-1], SIZE, SIZE, camera)
    # Reversed winding is the same surface seen from behind: drawn and lit the same.
    np.testing.assert_array_equal(front, back)


def test_fixed_camera_shows_translation(sphere):
    vertices, faces = sphere
    shift = 0.02
    frames = np.stack([vertices, vertices + [shift, 0.0, 0.0], vertices + [0.0, shift, 0.0]])
    images = render_sequence(frames, faces, SIZE, SIZE)
    assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == np.uint8
    # The camera fitted on frame 0 is kept: 0.2 m spans 84 % of the image.
    pixels = shift * SIZE * 0.84 / 0.2
    c0, c1, c2 = (foreground_centroid(image) for image in images)
    assert c1 - c0 == pytest.approx([pixels, 0.0], abs=1.0)
    assert c2 - c0 == pytest.approx([0.0, -pixels], abs=1.0)  # up in the world is up in the image


def test_renderer_keeps_first_camera_and_iterates(sphere):
    vertices, faces = sphere
    renderer = Renderer(faces, SIZE, SIZE)
    first = renderer.render(vertices)
    camera = renderer.camera
    renderer.render(vertices * 2.0)
    assert renderer.camera == camera
    frames = list(renderer.iter_frames(np.stack([vertices, vertices]), progress=False))
    assert len(frames) == 2
    np.testing.assert_array_equal(frames[0], first)


def test_yaw_turns_the_head(sphere):
    vertices, faces = sphere
    # Mark a "nose" patch at the front (+z) in red and find it in the image.
    nose = vertices[:, 2] > 0.09
    colors = np.tile([[0.8, 0.8, 0.8]], (len(vertices), 1))
    colors[nose] = [1.0, 0.0, 0.0]

    def nose_x(image: np.ndarray) -> float:
        red = (image[..., 0].astype(int) > 2 * image[..., 1].astype(int) + 40)
        assert red.any()
        return float(np.nonzero(red)[1].mean())

    front = render_frame(vertices, faces, SIZE, SIZE, vertex_colors=colors)
    turned = render_frame(vertices, faces, SIZE, SIZE, vertex_colors=colors, yaw_degrees=30.0)
    assert not np.array_equal(front, turned)
    assert nose_x(front) == pytest.approx(SIZE / 2, abs=1.5)
    # Positive yaw turns the face to the image's right by r * sin(30 deg).
    expected = 0.1 * np.sin(np.radians(30.0)) * SIZE * 0.84 / 0.2
    assert nose_x(turned) - nose_x(front) == pytest.approx(expected, abs=3.0)


def test_vertex_colors_show_up(sphere):
    vertices, faces = sphere
    colors = np.zeros((len(vertices), 3), dtype=np.uint8)
    colors[:] = (230, 230, 230)
    colors[vertices[:, 0] < 0] = (20, 200, 40)  # the image's left half green
    image = render_frame(vertices, faces, SIZE, SIZE, vertex_colors=colors).astype(int)
    left = image[SIZE // 2, SIZE // 4]
    right = image[SIZE // 2, 3 * SIZE // 4]
    assert left[1] > left[0] + 60 and left[1] > left[2] + 60
    assert abs(right[0] - right[1]) < 20
    # Without colours the default skin tone is warm: red > green > blue.
    plain = render_frame(vertices, faces, SIZE, SIZE).astype(int)[SIZE // 2, SIZE // 2]
    assert plain[0] > plain[1] > plain[2]


def test_perspective_makes_near_parts_larger():
    near_v, faces = quad(0.05, 0.03)
    far_v, _ = quad(-0.05, 0.03)
    camera = Camera(center=(0.0, 0.0, 0.0), scale=SIZE / 0.2, fov_degrees=40.0)
    near = foreground_mask(render_frame(near_v, faces, SIZE, SIZE, camera)).sum()
    far = foreground_mask(render_frame(far_v, faces, SIZE, SIZE, camera)).sum()
    assert near > far * 1.1
    ortho = Camera(center=(0.0, 0.0, 0.0), scale=SIZE / 0.2)
    assert foreground_mask(render_frame(near_v, faces, SIZE, SIZE, ortho)).sum() == \
        foreground_mask(render_frame(far_v, faces, SIZE, SIZE, ortho)).sum()


def test_supersample_and_background_options(sphere):
    vertices, faces = sphere
    image = render_frame(vertices, faces, 64, 48, supersample=2, background=(0, 0, 255))
    assert image.shape == (48, 64, 3)
    assert tuple(image[0, 0]) == (0, 0, 255)
    assert not tuple(image[24, 32]) == (0, 0, 255)


def test_lighting_is_configurable():
    vertices, faces = quad(0.0, 0.05)
    camera = Camera(center=(0.0, 0.0, 0.0), scale=SIZE / 0.2)
    dim = Lighting(key_intensity=0.1, fill_intensity=0.0, ambient_sky=0.05, ambient_ground=0.05, specular=0.0)
    bright = render_frame(vertices, faces, SIZE, SIZE, camera).astype(int)[SIZE // 2, SIZE // 2]
    dark = render_frame(vertices, faces, SIZE, SIZE, camera, lighting=dim).astype(int)[SIZE // 2, SIZE // 2]
    assert bright.sum() > dark.sum() + 150


def test_error_colors():
    values = np.array([0.0, 0.5, 1.0, 2.0, np.nan])
    colors = error_colors(values, vmax=1.0)
    assert colors.shape == (5, 3) and colors.dtype == np.float32
    assert colors.min() >= 0.0 and colors.max() <= 1.0
    np.testing.assert_allclose(colors[2], colors[3])  # clipped at vmax
    np.testing.assert_allclose(colors[4], colors[0])  # NaN counts as zero error
    assert colors[0].sum() > 2.5  # pale at zero
    assert colors[2][0] > 2 * colors[2][2]  # red at vmax
    jet = error_colors(values, 1.0, colormap="jet")
    assert jet[0][2] > jet[0][0] and jet[2][0] > jet[2][2]  # blue to red
    assert error_colors(np.ones((2, 7))).shape == (2, 7, 3)
    with pytest.raises(VoxmeshError):
        error_colors(values, colormap="rainbow-unicorn")


def test_error_colors_render_on_mesh(sphere):
    vertices, faces = sphere
    colors = error_colors(np.abs(vertices[:, 0]), vmax=0.1)
    image = render_frame(vertices, faces, SIZE, SIZE, vertex_colors=colors).astype(int)
    edge = image[SIZE // 2, int(SIZE * 0.12)]  # large |x|: red
    assert edge[0] > edge[2] + 40


def test_bad_inputs_say_what_is_wrong(sphere):
    vertices, faces = sphere
    renderer = Renderer(faces, SIZE, SIZE)
    with pytest.raises(VoxmeshError, match="vertices"):
        renderer.render(vertices[:10])
    with pytest.raises(VoxmeshError, match="vertex_colors"):
        renderer.render(vertices, vertex_colors=np.zeros((3, 3)))
    with pytest.raises(VoxmeshError):
        Renderer(faces, camera=Camera((0, 0, 0), 100.0), yaw_degrees=30.0)
    with pytest.raises(VoxmeshError):
        Camera((0, 0, 0), -1.0)


def test_contact_sheet_shape_and_png(tmp_path, sphere):
    vertices, faces = sphere
    images = [render_frame(vertices, faces, 64, 48, yaw_degrees=yaw) for yaw in (0, 15, 30)]
    path = tmp_path / "sheets" / "sheet.png"
    sheet = contact_sheet(images, ["yaw 0", "yaw 15", "yaw 30 with a very long label indeed"], columns=2, path=path)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    padding, label_h = 8, int(round(12 * 1.6))
    assert sheet.shape[1] == 2 * (64 + padding) + padding
    assert sheet.shape[0] == 2 * (48 + label_h + padding) + padding
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        np.testing.assert_array_equal(np.asarray(saved.convert("RGB")), sheet)
    # The label strip under the first image has dark text pixels.
    strip = sheet[padding + 48: padding + 48 + label_h, padding: padding + 64]
    assert (strip.min(axis=-1) < 100).any()
    # No temporary files are left beside the PNG.
    assert [p.name for p in path.parent.iterdir()] == ["sheet.png"]
    with pytest.raises(VoxmeshError):
        contact_sheet(images, ["only one"], columns=2)


def test_rendering_leaves_torch_thread_count_alone():
    """numba's OpenMP layer shares libgomp with torch: a render must not change the
    thread count a user (or OMP_NUM_THREADS) gave torch."""
    import torch

    from voxmesh.mesh.head import build_head
    from voxmesh.render.rasterizer import Renderer

    before = torch.get_num_threads()
    head = build_head()
    try:
        torch.set_num_threads(1)
        Renderer(head.faces, width=64, height=64, reference_vertices=head.vertices).render(head.vertices)
        assert torch.get_num_threads() == 1
        # supersampling's box filter is a parallel kernel too
        Renderer(head.faces, width=64, height=64, reference_vertices=head.vertices, supersample=2).render(head.vertices)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

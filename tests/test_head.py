"""The procedural head and its rig: topology, proportions, regions and motions."""

import time

import numpy as np
import pytest
import trimesh

from voxmesh import VoxmeshError
from voxmesh.mesh import Template
from voxmesh.mesh.head import build_head, display_colors
from voxmesh.mesh.rig import EXPRESSION_NAMES, IDENTITY_NAMES, VISEME_NAMES, HeadRig


@pytest.fixture(scope="module")
def head() -> Template:
    return build_head()


@pytest.fixture(scope="module")
def rig(head) -> HeadRig:
    return HeadRig(head)


def _pose(rig, jaw_degrees=0.0, visemes=None, expressions=None, blink=0.0, style=None, neutral=None):
    """One frame ``[V, 3]`` from named weights."""
    vis = np.zeros((1, rig.n_visemes))
    exp = np.zeros((1, rig.n_expressions))
    for name, w in (visemes or {}).items():
        vis[0, rig.viseme_names.index(name)] = w
    for name, w in (expressions or {}).items():
        exp[0, rig.expression_names.index(name)] = w
    neutral = rig.template.vertices if neutral is None else neutral
    return rig.pose(neutral, [np.radians(jaw_degrees)], vis, exp, [blink], style)[0]


def _lip_gaps(head, vertices):
    pairs = head.vertex_pairs["inner_lip_pairs"]
    return np.linalg.norm(vertices[pairs[:, 0]] - vertices[pairs[:, 1]], axis=1)


def _mouth_width(head, vertices):
    right, left = head.vertex_pairs["lip_corners"][0]
    return float(np.linalg.norm(vertices[left] - vertices[right]))


# ---- the mesh -----------------------------------------------------------------------------

def test_vertex_count_and_faces(head):
    assert 3000 <= head.num_vertices <= 6000
    assert head.faces.shape[1] == 3 and head.faces.min() >= 0 and head.faces.max() < head.num_vertices
    # every vertex is used by some face, and no face repeats a vertex
    assert len(np.unique(head.faces)) == head.num_vertices
    assert np.all((head.faces[:, 0] != head.faces[:, 1]) & (head.faces[:, 1] != head.faces[:, 2])
                  & (head.faces[:, 0] != head.faces[:, 2]))


def test_deterministic_bytes():
    a, b = build_head(), build_head()
    assert a.vertices.tobytes() == b.vertices.tobytes()
    assert a.faces.tobytes() == b.faces.tobytes()
    assert a.regions.keys() == b.regions.keys()
    assert all(np.array_equal(a.regions[k], b.regions[k]) for k in a.regions)
    assert all(np.array_equal(a.vertex_pairs[k], b.vertex_pairs[k]) for k in a.vertex_pairs)


def test_build_is_fast():
    start = time.perf_counter()
    build_head()
    assert time.perf_counter() - start < 2.0


def test_consistent_outward_winding(head):
    faces = head.faces
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = directed[:, 0] * head.num_vertices + directed[:, 1]
    # no directed edge twice: neighbouring faces traverse a shared edge in opposite ways
    assert len(np.unique(keys)) == len(keys)
    reverse = directed[:, 1] * head.num_vertices + directed[:, 0]
    boundary = ~np.isin(reverse, keys)
    # the only open edges are the rims of the two eye openings (eyeballs sit behind them)
    rim = np.unique(directed[boundary])
    lids = np.concatenate([head.vertex_pairs["eyelid_pairs"].ravel(), head.regions["eyes"]])
    assert np.all(np.isin(rim, lids))
    mesh = trimesh.Trimesh(head.vertices.astype(np.float64), faces, process=False)
    assert mesh.is_winding_consistent
    # normals point away from the head centre on the skull
    centroids = mesh.triangles_center
    outward = np.einsum("ij,ij->i", mesh.face_normals, centroids - np.array([0.0, 0.03, 0.0]))
    skull = centroids[:, 1] > 0.06
    assert (outward[skull] > 0).mean() > 0.99
    assert (outward > 0).mean() > 0.9
    # components: the head, two eyeballs and two rows of teeth, each closed except the head
    assert len(trimesh.graph.connected_components(mesh.edges)) == 5


def test_proportions(head):
    v = head.vertices
    crown = v[:, 1].max()
    face = v[head.regions["face"]]
    chin = face[(np.abs(face[:, 0]) < 0.005) & (face[:, 2] > 0.06), 1].min()
    assert 0.2 <= crown - chin <= 0.25
    width = np.ptp(v[v[:, 1] > 0.03, 0])
    assert 0.13 < width < 0.18  # temples, with the ears
    assert np.ptp(v[:, 2]) > 0.18  # front to back
    # origin between the ears: the head is roughly centred on x = 0 and z = 0
    assert abs(v[:, 0].mean()) < 1e-3
    # nose tip in front of everything, eyes about half-way from crown to chin
    nose = v[head.regions["nose"]]
    assert nose[:, 2].max() == pytest.approx(v[:, 2].max(), abs=1e-6)
    eyes = v[head.regions["eyeballs"]]
    assert abs(eyes[:, 1].mean() - 0.5 * (crown + chin)) < 0.015
    # pupils about 63 mm apart
    left, right = eyes[eyes[:, 0] > 0], eyes[eyes[:, 0] < 0]
    assert 0.058 < left[:, 0].mean() - right[:, 0].mean() < 0.068


def test_symmetric(head):
    from scipy.spatial import cKDTree

    mirrored = head.vertices * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    dist, _ = cKDTree(head.vertices).query(mirrored)
    assert dist.max() < 1e-5


def test_regions(head):
    required = ["lips", "eyes", "forehead", "upper_face", "jaw", "inner_mouth", "eyeballs", "face"]
    for name in required:
        idx = head.regions[name]
        assert idx.dtype == np.int64 and len(idx) > 0, name
        assert idx.min() >= 0 and idx.max() < head.num_vertices, name
        assert len(np.unique(idx)) == len(idx), name
    lips = len(head.regions["lips"]) / head.num_vertices
    assert 0.03 < lips < 0.08
    # the metrics' regions do not overlap where they must not
    assert not np.intersect1d(head.regions["upper_face"], head.regions["jaw"]).size
    assert not np.intersect1d(head.regions["lips"], head.regions["eyes"]).size
    assert np.all(np.isin(head.regions["eyes"], head.regions["upper_face"]))
    # density: lips and eyes are much more finely meshed than the back of the head
    v, f = head.vertices, head.faces
    edges = np.linalg.norm(v[f[:, 0]] - v[f[:, 1]], axis=1)
    lips_f = np.isin(f[:, 0], head.regions["lips"])
    back_f = v[f[:, 0], 2] < -0.05
    assert np.median(edges[lips_f]) * 3 < np.median(edges[back_f])


def test_display_colors(head):
    colors = display_colors(head)
    assert colors.shape == (head.num_vertices, 3) and colors.dtype == np.float32
    assert colors.min() >= 0.0 and colors.max() <= 1.0
    # the inner mouth is shaded dark, the lips redder than the skin
    assert colors[head.regions["inner_mouth"]].mean() < 0.3
    lips = colors[head.regions["upper_lip"]].mean(axis=0)
    assert lips[0] > lips[1] + 0.2


def test_inner_lip_pairs_closed_at_rest(head):
    pairs = head.vertex_pairs["inner_lip_pairs"]
    assert pairs.ndim == 2 and pairs.shape[1] == 2 and 10 <= len(pairs) <= 24
    assert np.all(np.isin(pairs, head.regions["lips"]))
    assert _lip_gaps(head, head.vertices).max() < 1e-3
    assert not np.intersect1d(pairs[:, 0], pairs[:, 1]).size  # separate rims


# ---- the rig ------------------------------------------------------------------------------

def test_rig_names(rig):
    assert list(rig.viseme_names) == list(VISEME_NAMES)
    assert set(VISEME_NAMES) >= {"rest", "bilabial", "labiodental", "dental", "alveolar", "postalveolar",
                                 "velar", "r", "open_vowel", "mid_vowel", "close_vowel", "rounded_vowel", "w"}
    assert list(rig.expression_names) == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
                                          "surprised"]
    assert len(rig.identity_names) >= 8
    assert {"face_width", "face_length", "jaw_width", "chin", "nose_size", "lip_thickness", "eye_spacing",
            "cheek_fullness"} <= set(IDENTITY_NAMES)
    assert np.all(rig.expression_basis[EXPRESSION_NAMES.index("neutral")] == 0)


def test_jaw_opens_mouth_proportionally(rig, head):
    gaps = [_lip_gaps(head, _pose(rig, deg)).mean() for deg in (0, 5, 10, 15, 20)]
    assert gaps[0] < 1e-4
    assert np.all(np.diff(gaps) > 0)
    per_degree = np.array(gaps[1:]) / np.array([5, 10, 15, 20])
    assert per_degree.max() / per_degree.min() < 1.3  # roughly proportional
    assert 0.004 < gaps[2] < 0.03  # 10 degrees part the lips by a centimetre or so


def test_upper_face_still_under_jaw(rig, head):
    moved = _pose(rig, 25.0) - head.vertices
    assert np.abs(moved[head.regions["upper_face"]]).max() == 0.0
    assert np.abs(moved[head.regions["eyeballs"]]).max() == 0.0
    chin = head.regions["jaw"]
    assert np.linalg.norm(moved[chin], axis=1).max() > 0.02


def test_bilabial_closes_lips_with_small_jaw(rig, head):
    for deg in (0.0, 3.0, 6.0):
        frame = _pose(rig, deg, {"bilabial": 1.0})
        assert _lip_gaps(head, frame).max() < 1e-3


def test_open_vowel_opens(rig, head):
    assert _lip_gaps(head, _pose(rig, 6.0, {"open_vowel": 1.0})).mean() > 0.005
    # the vowel's own lip parting, without the jaw
    assert _lip_gaps(head, _pose(rig, 0.0, {"open_vowel": 1.0})).mean() > 0.004


def test_mouth_width_visemes(rig, head):
    rest = _mouth_width(head, head.vertices)
    assert 0.045 <= rest <= 0.055
    for name in ("rounded_vowel", "w"):
        narrowing = rest - _mouth_width(head, _pose(rig, 0.0, {name: 1.0}))
        assert 0.005 <= narrowing <= 0.02, name
    widening = _mouth_width(head, _pose(rig, 0.0, {"close_vowel": 1.0})) - rest
    assert 0.005 <= widening <= 0.01
    # rounding pushes the lips forward
    mid = head.vertex_pairs["lip_midpoints"][0]
    forward = _pose(rig, 0.0, {"rounded_vowel": 1.0})[mid, 2] - head.vertices[mid, 2]
    assert np.all(forward > 0.002)


def test_labiodental_tucks_lower_lip(rig, head):
    pairs = head.vertex_pairs["inner_lip_pairs"]
    frame = _pose(rig, 5.0, {"labiodental": 1.0})
    middle = pairs[len(pairs) // 2]
    upper, lower = frame[middle[0]], frame[middle[1]]
    assert lower[2] < upper[2] - 0.002  # behind the upper lip, under the teeth
    assert abs(lower[1] - upper[1]) < 0.004


def test_visemes_are_smooth_fields(rig, head):
    # many vertices move a little, not a few vertices a lot
    for k, name in enumerate(VISEME_NAMES[1:], start=1):
        d = np.linalg.norm(rig.viseme_basis[k], axis=1)
        assert (d > 0.1 * d.max()).sum() > 40, name
        assert d.max() < 0.012, name


def test_happy_raises_lip_corners(rig, head):
    corners = head.vertex_pairs["lip_corners"][0]
    happy = _pose(rig, 0.0, expressions={"happy": 1.0})
    assert np.all(happy[corners, 1] - head.vertices[corners, 1] > 0.002)
    sad = _pose(rig, 0.0, expressions={"sad": 1.0})
    assert np.all(sad[corners, 1] - head.vertices[corners, 1] < -0.001)


def test_surprised_raises_brows(rig, head):
    brows = head.regions["brows"]
    lift = _pose(rig, 0.0, expressions={"surprised": 1.0})[brows, 1] - head.vertices[brows, 1]
    assert 0.003 <= lift.mean() <= 0.008
    angry = _pose(rig, 0.0, expressions={"angry": 1.0})[brows, 1] - head.vertices[brows, 1]
    assert angry.mean() < -0.001


def test_blink_closes_eyes(rig, head):
    pairs = head.vertex_pairs["eyelid_pairs"]

    def opening(v):
        return np.linalg.norm(v[pairs[:, 0]] - v[pairs[:, 1]], axis=1)

    assert opening(head.vertices).max() > 0.007
    assert opening(_pose(rig, blink=1.0)).max() < 1e-3
    half = opening(_pose(rig, blink=0.5)).mean()
    assert 0.3 * opening(head.vertices).mean() < half < 0.7 * opening(head.vertices).mean()
    # the lids close over the eyeball, not through it
    balls = head.regions["eyeballs"]
    closed = _pose(rig, blink=0.6)
    for sign in (-1, 1):
        ball = head.vertices[balls[np.sign(head.vertices[balls, 0]) == sign]]
        center = 0.5 * (ball.min(0) + ball.max(0))
        radius = 0.5 * np.ptp(ball[:, 0])
        lids = pairs[np.sign(head.vertices[pairs[:, 0], 0]) == sign].ravel()
        assert np.linalg.norm(closed[lids] - center, axis=1).min() > radius


def test_identity_shapes(rig, head):
    rng = np.random.default_rng(0)
    shapes = [rig.identity_shape(rng.uniform(-1, 1, rig.n_identity)) for _ in range(3)]
    for shape in shapes:
        assert shape.shape == head.vertices.shape and shape.dtype == np.float32
        change = np.linalg.norm(shape - head.vertices, axis=1)
        assert 0.002 < change.max() < 0.03
        # lips still closed at rest, topology untouched
        assert _lip_gaps(head, shape).max() < 1e-3
        mesh = trimesh.Trimesh(shape.astype(np.float64), head.faces, process=False)
        assert mesh.is_winding_consistent
    assert np.abs(shapes[0] - shapes[1]).max() > 0.002
    assert np.array_equal(rig.identity_shape(np.zeros(rig.n_identity)), head.vertices)
    # each component changes the face, by a few millimetres to about a centimetre
    for k, name in enumerate(IDENTITY_NAMES):
        d = np.linalg.norm(rig.identity_basis[k], axis=1).max()
        assert 0.002 < d < 0.015, name
    # the eyeballs move rigidly with the eyes
    balls = head.regions["eyeballs"]
    for k in range(rig.n_identity):
        field = rig.identity_basis[k, balls]
        for sign in (-1, 1):
            side = field[np.sign(head.vertices[balls, 0]) == sign]
            assert np.ptp(side, axis=0).max() < 1e-7
    with pytest.raises(VoxmeshError):
        rig.identity_shape(np.zeros(3))


def test_pose_on_identity_keeps_contacts(rig, head):
    neutral = rig.identity_shape(np.linspace(-0.8, 0.8, rig.n_identity))
    assert _lip_gaps(head, _pose(rig, 4.0, {"bilabial": 1.0}, neutral=neutral)).max() < 1e-3
    pairs = head.vertex_pairs["eyelid_pairs"]
    closed = _pose(rig, blink=1.0, neutral=neutral)
    assert np.linalg.norm(closed[pairs[:, 0]] - closed[pairs[:, 1]], axis=1).max() < 1e-3
    # displacements are relative to the subject's own neutral
    still = _pose(rig, neutral=neutral)
    assert np.abs(still - neutral).max() < 1e-6


def test_pose_vectorised_and_fast(rig, head):
    rng = np.random.default_rng(1)
    n = 300
    args = (head.vertices, rng.uniform(0, 0.3, n), rng.uniform(0, 1, (n, rig.n_visemes)),
            rng.uniform(0, 1, (n, rig.n_expressions)), rng.uniform(0, 1, n))
    style = {"lip_amplitude": 1.2, "jaw_amplitude": 0.8, "smile": 0.3, "asymmetry": 0.2}
    rig.pose(*args, style=style)
    start = time.perf_counter()
    out = rig.pose(*args, style=style)
    elapsed = time.perf_counter() - start
    assert out.shape == (n, head.num_vertices, 3) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert elapsed < 0.5  # well under 0.1 s on a normal machine; loose for busy CI
    # frame t of the batch equals posing frame t alone
    t = 17
    single = rig.pose(args[0], args[1][t:t + 1], args[2][t:t + 1], args[3][t:t + 1], args[4][t:t + 1], style)
    np.testing.assert_allclose(out[t], single[0], atol=1e-6)


def test_style_changes_motion(rig, head):
    base = _pose(rig, 8.0, {"open_vowel": 1.0})
    bigger = _pose(rig, 8.0, {"open_vowel": 1.0}, style={"lip_amplitude": 1.5, "jaw_amplitude": 1.3})
    assert _lip_gaps(head, bigger).mean() > _lip_gaps(head, base).mean() + 0.002
    corners = head.vertex_pairs["lip_corners"][0]
    smiling = _pose(rig, 0.0, style={"smile": 1.0})
    assert np.all(smiling[corners, 1] > head.vertices[corners, 1] + 0.001)
    lopsided = _pose(rig, 0.0, expressions={"happy": 1.0}, style={"asymmetry": 0.5})
    lift = lopsided[corners, 1] - head.vertices[corners, 1]
    assert lift[1] > lift[0] + 0.001  # the subject's left corner (+x) rises more
    with pytest.raises(VoxmeshError):
        _pose(rig, 0.0, style={"loudness": 1.0})


def test_pose_checks_shapes(rig, head):
    with pytest.raises(VoxmeshError):
        rig.pose(head.vertices[:10], [0.0], np.zeros((1, rig.n_visemes)), np.zeros((1, rig.n_expressions)), [0.0])
    with pytest.raises(VoxmeshError):
        rig.pose(head.vertices, [0.0, 0.1], np.zeros((1, rig.n_visemes)), np.zeros((2, rig.n_expressions)),
                 [0.0, 0.0])

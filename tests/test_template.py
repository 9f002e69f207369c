import pickle

import numpy as np
import pytest
from miniature import tiny_topology

from voxmesh.errors import VoxmeshError
from voxmesh.mesh import Template, load_regions, load_templates, save_templates, topology_hash


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_mesh_round_trip_keeps_vertex_order(tmp_path, suffix):
    vertices, faces = tiny_topology()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(vertices))  # an order trimesh would not choose itself
    inverse = np.argsort(order)
    tpl = Template(vertices[order], inverse[faces], {"lips": [0, 1, 2]})
    tpl.save(tmp_path / f"head{suffix}", tmp_path / "regions.json")
    back = Template.load(tmp_path / f"head{suffix}", tmp_path / "regions.json")
    np.testing.assert_allclose(back.vertices, tpl.vertices, atol=1e-6)
    np.testing.assert_array_equal(back.faces, tpl.faces)
    assert back.region("lips").tolist() == [0, 1, 2]
    assert back.topology_hash == tpl.topology_hash


def test_topology_hash_changes_with_faces():
    vertices, faces = tiny_topology()
    assert topology_hash(faces, len(vertices)) != topology_hash(faces[::-1], len(vertices))
    assert topology_hash(faces, len(vertices)) != topology_hash(faces, len(vertices) + 1)


def test_templates_pickle_round_trip_and_python2_style(tmp_path):
    save_templates(tmp_path / "templates.pkl", {"s1": np.ones((4, 3)), "s2": np.zeros(12)})
    loaded = load_templates(tmp_path / "templates.pkl")
    assert loaded["s1"].dtype == np.float32 and loaded["s2"].shape == (4, 3)
    with open(tmp_path / "flat.pkl", "wb") as fh:
        pickle.dump({"s": np.arange(6, dtype=np.float64)}, fh, protocol=2)
    assert load_templates(tmp_path / "flat.pkl")["s"].shape == (2, 3)


def test_flame_masks_and_index_files(tmp_path):
    masks = {"lips": np.array([1, 2, 3]), "eye_region": np.array([4, 5]), "forehead": np.array([5, 6]),
             "nose": np.array([7])}
    with open(tmp_path / "FLAME_masks.pkl", "wb") as fh:
        pickle.dump(masks, fh, protocol=2)
    regions = load_regions(tmp_path / "FLAME_masks.pkl")
    assert regions["eyes"].tolist() == [4, 5] and regions["nose"].tolist() == [7]
    assert regions["upper_face"].tolist() == [4, 5, 6]
    (tmp_path / "lips.txt").write_text("# lip vertices\n3\n1\n\n2\n")
    assert load_regions(tmp_path / "lips.txt")["lips"].tolist() == [3, 1, 2]
    (tmp_path / "bad.txt").write_text("3\nfour\n")
    with pytest.raises(VoxmeshError, match="Line 2 of .*bad.txt"):
        load_regions(tmp_path / "bad.txt")


def test_template_validation_messages(tmp_path):
    vertices, faces = tiny_topology()
    with pytest.raises(VoxmeshError, match="faces index vertex"):
        Template(vertices[:10], faces)
    with pytest.raises(VoxmeshError, match="region 'lips' holds vertex index"):
        Template(vertices, faces, {"lips": [0, 999]})
    with pytest.raises(VoxmeshError, match="does not fit this topology"):
        Template(vertices, faces).with_vertices(vertices[:5])
    with pytest.raises(VoxmeshError, match="not .obj or .ply"):
        Template.load(tmp_path / "x.stl") if (tmp_path / "x.stl").write_text("x") else None

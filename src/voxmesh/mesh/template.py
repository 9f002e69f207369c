"""The shared topology of a dataset: neutral vertices, faces and named regions."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path, content_hash, read_data_pickle

# Names a FLAME_masks.pkl uses, mapped to voxmesh's region names.
FLAME_MASK_ALIASES = {"eye_region": "eyes", "lips": "lips", "forehead": "forehead"}


def topology_hash(faces: np.ndarray, num_vertices: int) -> str:
    """A short digest identifying a mesh topology (face list and vertex count)."""
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    return content_hash(str(int(num_vertices)), faces.tobytes())


@dataclass
class Template:
    """A neutral face and its topology.

    vertices: float32 ``[V, 3]`` in metres; faces: int64 ``[F, 3]`` (counter-clockwise
    seen from outside); regions: name -> int64 vertex indices; vertex_pairs: name ->
    int64 ``[P, 2]`` (for example upper/lower inner-lip pairs for mouth opening).
    """

    vertices: np.ndarray
    faces: np.ndarray
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    vertex_pairs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise VoxmeshError(f"Template vertices have shape {self.vertices.shape}; expected [V, 3].")
        if self.faces.size and (self.faces.ndim != 2 or self.faces.shape[1] != 3):
            raise VoxmeshError(f"Template faces have shape {self.faces.shape}; expected [F, 3] triangles.")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise VoxmeshError(
                f"Template faces index vertex {int(self.faces.max())} but the mesh has "
                f"{len(self.vertices)} vertices; use faces that match the vertices."
            )
        self.regions = {k: np.asarray(v, dtype=np.int64) for k, v in self.regions.items()}
        self.vertex_pairs = {k: np.asarray(v, dtype=np.int64).reshape(-1, 2) for k, v in self.vertex_pairs.items()}
        for name, idx in self.regions.items():
            check_indices(idx, len(self.vertices), f"region '{name}'")

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def topology_hash(self) -> str:
        return topology_hash(self.faces, self.num_vertices)

    def region(self, name: str) -> np.ndarray:
        """Vertex indices of a named region, or a clear error naming what exists."""
        if name not in self.regions:
            known = ", ".join(sorted(self.regions)) or "none"
            raise VoxmeshError(f"The template has no region '{name}' (it has: {known}); add it to regions.json.")
        return self.regions[name]

    def with_vertices(self, vertices: np.ndarray) -> "Template":
        """The same topology and regions with other neutral vertices ``[V, 3]``."""
        vertices = np.asarray(vertices, dtype=np.float32)
        if vertices.shape != self.vertices.shape:
            raise VoxmeshError(
                f"A template of shape {vertices.shape} does not fit this topology of "
                f"{self.num_vertices} vertices; use a face of the same topology."
            )
        return Template(vertices, self.faces, dict(self.regions), dict(self.vertex_pairs))

    # ---- files -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, regions: str | Path | dict | None = None) -> "Template":
        """Read a .obj or .ply mesh (vertex order kept) and optional regions."""
        vertices, faces = load_mesh(path)
        problem = scale_problem(vertices, f"Mesh file {path}")
        if problem:
            raise VoxmeshError(problem)
        if isinstance(regions, (str, Path)):
            regions = load_regions(regions)
        tpl = cls(vertices, faces)
        if regions:
            tpl.regions, tpl.vertex_pairs = split_regions(regions)
            for name, idx in tpl.regions.items():
                check_indices(idx, tpl.num_vertices, f"region '{name}'")
        return tpl

    def save(self, path: str | Path, regions_path: str | Path | None = None) -> None:
        """Write the mesh as .obj or .ply, and the regions as JSON if a path is given."""
        save_mesh(path, self.vertices, self.faces)
        if regions_path is not None:
            save_regions(regions_path, {**self.regions, **self.vertex_pairs})


def check_indices(indices: np.ndarray, num_vertices: int, what: str) -> None:
    if indices.size and (indices.min() < 0 or indices.max() >= num_vertices):
        raise VoxmeshError(
            f"{what} holds vertex index {int(indices.max())} outside a mesh of {num_vertices} "
            "vertices; use indices of this topology."
        )


def split_regions(regions: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Separate plain index lists from ``[P, 2]`` vertex-pair lists."""
    plain, pairs = {}, {}
    for name, value in regions.items():
        arr = np.asarray(value, dtype=np.int64)
        (pairs if arr.ndim == 2 else plain)[name] = arr
    return plain, pairs


def load_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices float32 ``[V, 3]`` and faces int64 ``[F, 3]`` of a .obj/.ply file,
    in file order (no merging or reordering)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise VoxmeshError(f"Mesh file {path} does not exist; check the path.")
    if path.suffix.lower() not in (".obj", ".ply"):
        raise VoxmeshError(f"Mesh file {path} is not .obj or .ply; convert it to one of them.")
    try:
        mesh = trimesh.load(str(path), process=False, maintain_order=True, force="mesh")
    except IndexError:  # trimesh's .obj reader indexes the vertex list with the faces
        raise VoxmeshError(f"Mesh file {path} has faces that refer to vertices it does not have; re-export it.") from None
    except Exception as exc:
        raise VoxmeshError(f"Cannot read mesh file {path} ({type(exc).__name__}); re-export it as .obj or .ply.") from None
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(vertices) == 0:
        raise VoxmeshError(f"Mesh file {path} has no vertices; re-export it with its geometry.")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        bad = int(faces.max()) if faces.max() >= len(vertices) else int(faces.min())
        raise VoxmeshError(
            f"Mesh file {path} has a face on vertex {bad} but only {len(vertices)} vertices; re-export it."
        )
    if not np.all(np.isfinite(vertices)):
        raise VoxmeshError(f"Mesh file {path} has NaN or infinite vertex coordinates; re-export it.")
    return vertices, faces


# A human face is about 0.2 m tall; a mesh more than this factor larger or smaller
# than expected is in other units (millimetres are 1000 times larger).
SCALE_TOLERANCE = 10.0
FACE_SIZE_M = 0.2
UNIT_NAMES = {1000: "millimetres", 100: "centimetres", 10: "decimetres"}


def mesh_size(vertices: np.ndarray) -> float:
    """The longest side of the axis-aligned bounding box of ``[V, 3]`` vertices."""
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    finite = vertices[np.all(np.isfinite(vertices), axis=1)]
    return float((finite.max(axis=0) - finite.min(axis=0)).max()) if len(finite) else 0.0


def scale_problem(vertices: np.ndarray, what: str, reference: np.ndarray | None = None) -> str | None:
    """A one-sentence description of ``what`` being in other units than metres, or None.

    vertices: ``[V, 3]`` (or ``[V*3]``); reference: a face ``[V', 3]`` known to be in
    metres (a model's own neutral face); without one, a face is taken to be about
    ``FACE_SIZE_M`` tall and only larger meshes are flagged. Sizes within
    ``SCALE_TOLERANCE`` times of the expected one pass."""
    size = mesh_size(vertices)
    expected = mesh_size(reference) if reference is not None else FACE_SIZE_M
    if size == 0.0 or expected == 0.0:
        return None
    ratio = size / expected
    against = "the model's face" if reference is not None else "a face in metres"
    if ratio > SCALE_TOLERANCE:
        factor = int(10 ** round(np.log10(ratio)))
        unit = UNIT_NAMES.get(factor, f"units {factor} times too large")
        return (f"{what} is {size:.3g} units across, about {factor} times {against} ({expected:.2g} m), so it looks "
                f"like {unit}; divide its coordinates by {factor} to give metres.")
    # Without a reference only a too-large mesh is flagged: a small one may be a part of a face.
    if reference is not None and ratio < 1.0 / SCALE_TOLERANCE:
        factor = int(10 ** round(np.log10(1.0 / ratio)))
        return (f"{what} is {size:.3g} units across, about 1/{factor} of {against} ({expected:.2g} m); multiply its "
                f"coordinates by {factor} to give metres.")
    return None


def load_face(path: str | Path, reference: np.ndarray | None = None) -> np.ndarray:
    """A neutral face float32 ``[V, 3]`` from ``.npy`` (``[V, 3]`` or ``[V*3]``),
    ``.obj`` or ``.ply``, checked: readable, finite, and in metres (compared with
    ``reference [V', 3]`` when given, else with the size of a face). The vertex count
    is the caller's to check against its topology."""
    path = Path(path)
    if not path.is_file():
        raise VoxmeshError(f"Face file {path} does not exist; check the path.")
    if path.suffix.lower() not in (".npy", ".obj", ".ply"):
        raise VoxmeshError(f"Face file {path} is not .npy, .obj or .ply; save the face as one of them.")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise VoxmeshError(
                f"Cannot read face file {path} ({type(exc).__name__}: it is truncated, corrupt or holds objects); "
                "save the [V, 3] vertices with numpy.save."
            ) from None
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array) or array.size % 3 or array.size == 0:
            raise VoxmeshError(
                f"Face file {path} holds a {array.dtype} array of shape {array.shape}, not [V, 3] vertex "
                "coordinates; save the vertices with numpy.save."
            )
        vertices = array.astype(np.float32).reshape(-1, 3)
        if not np.all(np.isfinite(vertices)):
            raise VoxmeshError(f"Face file {path} has NaN or infinite vertex coordinates; re-export the face.")
    else:
        vertices = load_mesh(path)[0]
    problem = scale_problem(vertices, f"Face file {path}", reference)
    if problem:
        raise VoxmeshError(problem)
    return vertices


def save_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a mesh as .obj or .ply (chosen by extension), atomically."""
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".obj", ".ply"):
        raise VoxmeshError(f"Cannot write mesh {path}: use a .obj or .ply file name.")
    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), process=False)
    with atomic_path(path) as tmp:
        mesh.export(str(tmp), file_type=suffix[1:])


# ---- templates.pkl -----------------------------------------------------------------
def load_templates(path: str | Path) -> dict[str, np.ndarray]:
    """``{subject: float32 [V, 3]}`` from a templates.pkl (Python 2 pickles included)."""
    path = Path(path)
    if not path.is_file():
        raise VoxmeshError(f"Templates file {path} does not exist; every dataset needs templates.pkl.")
    # Datasets travel between labs: the pickle is read as data, never run.
    raw = read_data_pickle(path, "Templates file", "a dict of subject name to [V, 3] vertex array")
    if not isinstance(raw, dict):
        raise VoxmeshError(f"Templates file {path} holds a {type(raw).__name__}, not a dict; store a dict of subject "
                           "name to [V, 3] vertex array.")
    templates = {}
    for subject, verts in raw.items():
        try:
            arr = np.asarray(verts, dtype=np.float32)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.size == 0 or arr.size % 3:
            held = f"an array of shape {arr.shape}" if arr is not None else f"a {type(verts).__name__}"
            raise VoxmeshError(
                f"Templates file {path} holds {held} for subject '{subject}', not [V, 3] vertex coordinates; "
                "store each subject's neutral face as a float array."
            )
        if not np.all(np.isfinite(arr)):
            raise VoxmeshError(
                f"Templates file {path} has NaN or infinite vertices for subject '{subject}'; re-export its neutral face."
            )
        templates[str(subject)] = arr.reshape(-1, 3)
    return templates


def save_templates(path: str | Path, templates: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump({k: np.asarray(v, dtype=np.float32) for k, v in templates.items()}, fh, protocol=4)


# ---- regions -----------------------------------------------------------------------
def load_regions(path: str | Path) -> dict[str, np.ndarray]:
    """Named vertex sets from regions.json, a FLAME_masks.pkl, or a one-index-a-line
    text file (the region is named after the file)."""
    path = Path(path)
    if not path.is_file():
        raise VoxmeshError(f"Region file {path} does not exist; check the path.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(path.read_text())
            return {k: np.asarray(v, dtype=np.int64) for k, v in data.items()}
        if suffix == ".pkl":
            return load_flame_masks(path)
        return {path.stem: load_index_file(path)}
    except VoxmeshError:
        raise
    except Exception as exc:
        raise VoxmeshError(f"Cannot read region file {path} ({type(exc).__name__}); check its format.") from None


def load_flame_masks(path: str | Path) -> dict[str, np.ndarray]:
    """Regions from FLAME's ``FLAME_masks.pkl``. Keys are kept as they are, and the
    ones voxmesh uses get their voxmesh names too (``eye_region`` -> ``eyes``); the
    upper face is eyes plus forehead, as in the papers' FDD masks."""
    masks = read_data_pickle(path, "Masks file", "a dict of region name to vertex indices")
    if not isinstance(masks, dict):
        raise VoxmeshError(f"Masks file {path} holds a {type(masks).__name__}, not a dict of region name to vertex "
                           "indices; store the regions as FLAME_masks.pkl does.")
    regions = {str(k): np.asarray(v, dtype=np.int64).ravel() for k, v in masks.items()}
    for flame_name, ours in FLAME_MASK_ALIASES.items():
        if flame_name in regions:
            regions.setdefault(ours, regions[flame_name])
    if "upper_face" not in regions and "eyes" in regions and "forehead" in regions:
        regions["upper_face"] = np.union1d(regions["eyes"], regions["forehead"])
    return regions


def load_index_file(path: str | Path) -> np.ndarray:
    """Vertex indices, one a line (blank lines and ``#`` comments ignored)."""
    values = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        for token in line.replace(",", " ").split():
            try:
                values.append(int(token))
            except ValueError:
                raise VoxmeshError(f"Line {number} of {path} is not a vertex index ('{token}'); write one integer a line.") from None
    return np.asarray(values, dtype=np.int64)


def save_regions(path: str | Path, regions: dict[str, np.ndarray]) -> None:
    data = {k: np.asarray(v).tolist() for k, v in regions.items()}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data))

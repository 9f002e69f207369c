"""The contact sheet of the synthetic head: neutral, every viseme, every emotion, a
blink and several identities, labelled, in one picture a person can judge."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxmesh.mesh.head import display_colors
from voxmesh.mesh.template import Template

# Jaw opening (degrees) that goes with each viseme in speech, so the sheet shows each
# mouth shape as it is seen while talking.
VISEME_JAW_DEGREES = {
    "rest": 0, "bilabial": 4, "labiodental": 5, "dental": 4, "alveolar": 3, "postalveolar": 4, "velar": 6,
    "r": 4, "open_vowel": 12, "mid_vowel": 7, "close_vowel": 3, "rounded_vowel": 6, "w": 3,
}


def vertex_colors_for(template: Template) -> np.ndarray | None:
    """Display colours ``[V, 3]`` when the template has the head's regions, else None
    (plain skin shading)."""
    if "inner_mouth" in template.regions and "lips" in template.regions:
        return display_colors(template)
    return None


def contact_sheet_poses(rig, identities: int = 4, seed: int = 0) -> tuple[list[np.ndarray], list[str], list[float]]:
    """Vertices ``[V, 3]``, a label and a camera yaw for every cell of the sheet."""
    neutral = rig.identity_shape(np.zeros(len(rig.identity_names), dtype=np.float32))
    n_vis, n_exp = len(rig.viseme_names), len(rig.expression_names)

    def posed(jaw_degrees=0.0, viseme=None, expression=None, blink=0.0, face=neutral):
        visemes = np.zeros((1, n_vis), np.float32)
        if viseme is not None:
            visemes[0, rig.viseme_names.index(viseme)] = 1.0
        expressions = np.zeros((1, n_exp), np.float32)
        if expression is not None:
            expressions[0, rig.expression_names.index(expression)] = 1.0
        return rig.pose(face, np.array([np.deg2rad(jaw_degrees)]), visemes, expressions, np.array([blink]))[0]

    cells = [(posed(), "neutral", 0.0), (posed(), "neutral, 30 deg", 30.0)]
    for name in rig.viseme_names:
        if name != "rest":
            cells.append((posed(VISEME_JAW_DEGREES.get(name, 4), viseme=name), f"{name.replace('_', ' ')}", 0.0))
    for name in rig.expression_names:
        jaw = 4.0 if name in ("surprised", "fearful") else 0.0
        cells.append((posed(jaw, expression=name), name, 0.0))
    cells.append((posed(blink=1.0), "blink", 0.0))
    rng = np.random.default_rng(seed)
    for k in range(identities):
        face = rig.identity_shape(rng.uniform(-1, 1, len(rig.identity_names)).astype(np.float32))
        cells.append((posed(face=face), f"identity {k + 1}", 20.0 if k % 2 else 0.0))
    vertices, labels, yaws = zip(*cells)
    return list(vertices), list(labels), list(yaws)


def render_contact_sheet(path: str | Path | None = None, size: int = 320, columns: int = 7) -> np.ndarray:
    """Render the sheet (uint8 ``[H, W, 3]``) and save it as PNG when ``path`` is given."""
    from voxmesh.data.synthetic.dataset import _rig
    from voxmesh.render import Renderer, contact_sheet

    rig = _rig()
    colors = vertex_colors_for(rig.template)
    vertices, labels, yaws = contact_sheet_poses(rig)
    # One camera for the whole sheet, framed on the face (not the neck), so cells compare.
    face = rig.template.region("face")
    reference = vertices[0][face]
    renderers = {yaw: Renderer(rig.template.faces, width=size, height=size, reference_vertices=reference,
                               yaw_degrees=yaw, vertex_colors=colors, supersample=2) for yaw in sorted(set(yaws))}
    images = [renderers[yaw].render(v) for v, yaw in zip(vertices, yaws)]
    return contact_sheet(images, labels, columns=columns, path=path)


# Shapes also shown at 30 degrees on the ARKit sheet: those that move the face in depth.
ARKIT_SIDE_VIEWS = ("jawForward", "mouthFunnel", "mouthPucker", "mouthRollLower", "mouthRollUpper",
                    "mouthShrugLower", "mouthShrugUpper", "cheekPuff", "tongueOut", "jawOpen")


def arkit_sheet_poses(shapes) -> tuple[list[np.ndarray], list[str], list[float]]:
    """Vertices ``[V, 3]``, a label and a camera yaw for every cell of the ARKit sheet:
    the neutral, each of the 52 shapes at weight 1 (``mouthClose`` with ``jawOpen``, as
    ARKit means it), then the shapes of ``ARKIT_SIDE_VIEWS`` at 30 degrees."""
    from voxmesh.mesh.arkit import ARKIT_NAMES

    k = len(ARKIT_NAMES)

    def posed(*names):
        weights = np.zeros((1, k), np.float32)
        for name in names:
            weights[0, ARKIT_NAMES.index(name)] = 1.0
        return shapes.rebuild(weights)[0]

    cells = [(shapes.neutral, "neutral", 0.0)]
    for name in ARKIT_NAMES:
        if name == "mouthClose":
            cells.append((posed("jawOpen", "mouthClose"), "mouthClose+jawOpen", 0.0))
        else:
            cells.append((posed(name), name, 0.0))
    cells.append((shapes.neutral, "neutral, 30 deg", 30.0))
    cells += [(posed(name), f"{name}, 30 deg", 30.0) for name in ARKIT_SIDE_VIEWS]
    vertices, labels, yaws = zip(*cells)
    return list(vertices), list(labels), list(yaws)


def render_arkit_sheet(path: str | Path | None = None, size: int = 256, columns: int = 8) -> np.ndarray:
    """Render the sheet of the head's 52 ARKit shapes (uint8 ``[H, W, 3]``) and save it as
    PNG when ``path`` is given (docs/arkit_shapes.png)."""
    from voxmesh.mesh.arkit import arkit_shapes
    from voxmesh.render import Renderer, contact_sheet

    shapes = arkit_shapes()
    colors = vertex_colors_for(shapes.template)
    vertices, labels, yaws = arkit_sheet_poses(shapes)
    reference = shapes.neutral[shapes.template.region("face")]
    renderers = {yaw: Renderer(shapes.template.faces, width=size, height=size, reference_vertices=reference,
                               yaw_degrees=yaw, vertex_colors=colors, supersample=2) for yaw in sorted(set(yaws))}
    images = [renderers[yaw].render(v) for v, yaw in zip(vertices, yaws)]
    return contact_sheet(images, labels, columns=columns, path=path, font_size=max(12, size // 16))

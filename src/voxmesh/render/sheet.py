"""Contact sheets: many renders tiled in a grid, each with a label under it, in one
image (methods side by side, frames of a sequence, error maps)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path

__all__ = ["contact_sheet"]

_SHEET_BACKGROUND = (255, 255, 255)
_TEXT_COLOR = (30, 30, 30)


def _as_rgb(image: np.ndarray, index: int) -> np.ndarray:
    """Any uint8/float grey, RGB or RGBA image as uint8 ``[H, W, 3]``."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise VoxmeshError(f"Image {index} has dtype {array.dtype}; pass uint8 or float images in [0, 1].")
        array = np.clip(np.round(np.nan_to_num(array) * 255.0), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise VoxmeshError(f"Image {index} has shape {array.shape}; expected [H, W], [H, W, 3] or [H, W, 4].")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font at ``size`` pixels, or its small bitmap font on
    Pillow builds without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> str:
    """``text``, cut with an ellipsis if it is wider than ``max_width`` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "…", font=font) > max_width:
        text = text[:-1]
    return text + "…"


def contact_sheet(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    columns: int = 4,
    path: str | os.PathLike | None = None,
    *,
    padding: int = 8,
    font_size: int | None = None,
) -> np.ndarray:
    """Tile ``images`` (each uint8 ``[H, W, 3]``; grey, RGBA and float in [0, 1] are
    converted) row by row into a grid of ``columns``, each with its label centred
    underneath. Images of different sizes are centred in cells of the largest size.

    font_size defaults to about 1/18 of the cell width (at least 12 px) so labels stay
    legible at any render size. When ``path`` is given the sheet is also written there
    as a PNG, atomically. Returns uint8 ``[rows * (H + label + padding) + padding,
    columns * (W + padding) + padding, 3]``.
    """
    if len(images) == 0:
        raise VoxmeshError("contact_sheet needs at least one image.")
    if labels is None:
        labels = [""] * len(images)
    if len(labels) != len(images):
        raise VoxmeshError(f"contact_sheet got {len(images)} images but {len(labels)} labels; pass one label an image.")
    if int(columns) < 1:
        raise VoxmeshError(f"contact_sheet columns {columns!r} must be at least 1.")
    tiles = [_as_rgb(image, i) for i, image in enumerate(images)]
    columns = min(int(columns), len(tiles))
    rows = -(-len(tiles) // columns)
    cell_h = max(t.shape[0] for t in tiles)
    cell_w = max(t.shape[1] for t in tiles)
    size = int(font_size) if font_size else max(12, cell_w // 18)
    font = _font(size)
    has_labels = any(str(label) for label in labels)
    label_h = int(round(size * 1.6)) if has_labels else 0

    sheet_w = columns * (cell_w + padding) + padding
    sheet_h = rows * (cell_h + label_h + padding) + padding
    canvas = Image.new("RGB", (sheet_w, sheet_h), _SHEET_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, (tile, label) in enumerate(zip(tiles, labels)):
        row, col = divmod(index, columns)
        left = padding + col * (cell_w + padding)
        top = padding + row * (cell_h + label_h + padding)
        canvas.paste(Image.fromarray(tile), (left + (cell_w - tile.shape[1]) // 2, top + (cell_h - tile.shape[0]) // 2))
        if label_h:
            text = _fit_text(draw, str(label), font, cell_w)
            # Centre by the text's measured box (works for bitmap fonts too, which
            # do not support anchors).
            x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
            x = left + (cell_w - (x1 - x0)) / 2 - x0
            y = top + cell_h + (label_h - (y1 - y0)) / 2 - y0
            draw.text((x, y), text, fill=_TEXT_COLOR, font=font)
    sheet = np.asarray(canvas, dtype=np.uint8).copy()
    if path is not None:
        kind = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower())
        if kind is None:
            raise VoxmeshError(f"Contact sheet {path} is neither .png nor .jpg; name it SHEET.png.")
        with atomic_path(path) as tmp:
            canvas.save(tmp, format=kind, **({"quality": 92} if kind == "JPEG" else {}))
    return sheet

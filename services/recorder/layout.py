"""Where each participant goes in the composed picture (no I/O).

A grid: ``n`` tiles in ``ceil(sqrt(n))`` columns, rows centred, each tile 16:9 letterboxed inside
its cell; the dominant speaker layout (one large tile and a strip) is :func:`speaker`. Frames are
placed aspect-preserving inside their tile (:func:`fit`). All values are even, as YUV 4:2:0 wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int


def _even(v: float) -> int:
    return max(2, int(v) // 2 * 2)


def grid(n: int, width: int, height: int, gap: int = 4) -> list[Rect]:
    if n <= 0:
        return []
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell_w = (width - gap * (cols + 1)) / cols
    cell_h = (height - gap * (rows + 1)) / rows
    # 16:9 tiles inside the cells
    tile_w = min(cell_w, cell_h * 16 / 9)
    tile_h = tile_w * 9 / 16
    tw, th = _even(tile_w), _even(tile_h)
    out: list[Rect] = []
    for i in range(n):
        row, col = divmod(i, cols)
        in_row = min(cols, n - row * cols)
        row_width = in_row * tw + (in_row - 1) * gap
        x0 = (width - row_width) / 2
        block_h = rows * th + (rows - 1) * gap
        y0 = (height - block_h) / 2
        out.append(Rect(_even(x0 + col * (tw + gap)), _even(y0 + row * (th + gap)), tw, th))
    return out


def speaker(n: int, width: int, height: int, gap: int = 4) -> list[Rect]:
    """Tile 0 large on top, the others in a strip below (a fifth of the height)."""
    if n <= 1:
        return grid(n, width, height, gap)
    strip_h = _even(height / 5)
    main = Rect(0, 0, width, _even(height - strip_h - gap))
    others = n - 1
    w = _even(min((width - gap * (others - 1)) / others, strip_h * 16 / 9))
    x0 = (width - (others * w + (others - 1) * gap)) / 2
    y = height - strip_h
    return [main] + [Rect(_even(x0 + i * (w + gap)), y, w, strip_h) for i in range(others)]


def fit(src_w: int, src_h: int, tile: Rect) -> Rect:
    """The largest rectangle of the source's aspect ratio centred inside ``tile``."""
    if src_w <= 0 or src_h <= 0:
        return tile
    scale = min(tile.w / src_w, tile.h / src_h)
    w, h = _even(src_w * scale), _even(src_h * scale)
    w, h = min(w, tile.w), min(h, tile.h)
    return Rect(tile.x + (tile.w - w) // 2 // 2 * 2, tile.y + (tile.h - h) // 2 // 2 * 2, w, h)

"""Where each participant goes in the composed picture (no I/O).

A grid: ``n`` tiles in ``ceil(sqrt(n))`` columns, rows centred, each tile 16:9 letterboxed inside
its cell; the dominant speaker layout (one large tile and a strip) is :func:`speaker`. Frames are
placed aspect-preserving inside their tile (:func:`fit`). All values are even, as YUV 4:2:0 wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.bridge_channel import ReceiverVideoConstraints, VideoConstraints


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


def margins(tile: Rect, box: Rect) -> list[Rect]:
    """The parts of ``tile`` outside ``box`` (a rectangle inside it, as :func:`fit` gives):
    the bands above and below it, then left and right of it; empty ones left out."""
    out = [
        Rect(tile.x, tile.y, tile.w, box.y - tile.y),
        Rect(tile.x, box.y + box.h, tile.w, tile.y + tile.h - box.y - box.h),
        Rect(tile.x, box.y, box.x - tile.x, box.h),
        Rect(box.x + box.w, box.y, tile.x + tile.w - box.x - box.w, box.h),
    ]
    return [r for r in out if r.w > 0 and r.h > 0]


LAYER_HEIGHTS = (180, 360, 720)
"""The simulcast layers Jitsi clients send (heights); the bridge forwards at most what is asked."""


def layer_for(tile_height: int) -> int:
    """The smallest layer height that fills a tile of ``tile_height`` (the largest layer when
    none does): a 236-row tile asks for 360p, a 176-row one for 180p."""
    return next((h for h in LAYER_HEIGHTS if h >= tile_height), LAYER_HEIGHTS[-1])


class Stage:
    """Who is shown in which tile. ``mode`` ``grid``: everyone alike, in the order they came;
    ``speaker``: the dominant speaker in the large tile of :func:`speaker`, the others in the
    strip in the order they came. The dominant speaker is the bridge's
    (``DominantSpeakerEndpointChangeEvent``); until it names someone who is shown, the most
    recent earlier speaker who is, else the first to come, takes the large tile."""

    def __init__(self, mode: str, width: int, height: int) -> None:
        if mode not in ("grid", "speaker"):
            raise ValueError(f"layout must be grid or speaker, got {mode!r}")
        self.mode, self.width, self.height = mode, width, height
        self.speakers: list[str] = []  # dominant first, then earlier ones, most recent first

    def speaker_changed(self, dominant: str, previous: list[str]) -> bool:
        """The bridge's event; True when the order of speakers changed."""
        order = [dominant] + [p for p in previous if p != dominant]
        order = list(dict.fromkeys(order))[:16]
        changed = order != self.speakers
        self.speakers = order
        return changed

    def arrange(self, owners: list[str]) -> list[tuple[str, Rect]]:
        """``owners`` (in the order they came) with their tiles, the large tile first."""
        if self.mode == "grid" or len(owners) <= 1:
            return list(zip(owners, grid(len(owners), self.width, self.height), strict=True))
        first = next((s for s in self.speakers if s in owners), owners[0])
        ordered = [first] + [o for o in owners if o != first]
        return list(zip(ordered, speaker(len(ordered), self.width, self.height), strict=True))

    def constraints(
        self, arranged: list[tuple[str, Rect]], sources: dict[str, list[str]], fps: int, expected: int
    ) -> ReceiverVideoConstraints:
        """The ``ReceiverVideoConstraints`` (docs/protocols.md#bridge-channel) for this
        arrangement: each shown source at the layer its tile needs, at most ``fps`` frames a
        second (the output's rate: frames the output never shows are not sent, nor decoded);
        sources not shown yet at the layer a grid of ``expected`` participants would need.
        ``sources``: video source names by owner (``<endpoint>-v0``)."""
        default_h = layer_for(
            max((t.h for t in grid(max(expected, 1), self.width, self.height)), default=180)
        )
        out: dict[str, VideoConstraints] = {}
        on_stage: list[str] = []
        for i, (owner, tile) in enumerate(arranged):
            for name in sources.get(owner, []):
                out[name] = VideoConstraints(max_height=layer_for(tile.h), max_frame_rate=fps)
                if i == 0 and self.mode == "speaker" and len(arranged) > 1:
                    on_stage.append(name)
        return ReceiverVideoConstraints(
            last_n=-1,
            on_stage_sources=on_stage,
            default_constraints=VideoConstraints(max_height=default_h, max_frame_rate=fps),
            constraints=out,
        )

"""The composed picture's layout: every tile inside the canvas, none overlapping, even sizes."""

from __future__ import annotations

import itertools

import pytest

from services.recorder.layout import Rect, fit, grid, speaker


def overlap(a: Rect, b: Rect) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 10, 16, 25])
@pytest.mark.parametrize("size", [(640, 360), (1280, 720), (480, 640)])
@pytest.mark.parametrize("arrange", [grid, speaker])
def test_tiles_fit_and_do_not_overlap(n: int, size: tuple[int, int], arrange) -> None:  # type: ignore[no-untyped-def]
    width, height = size
    tiles = arrange(n, width, height)
    assert len(tiles) == n
    for t in tiles:
        assert 0 <= t.x and 0 <= t.y and t.x + t.w <= width and t.y + t.h <= height, t
        assert t.w % 2 == 0 and t.h % 2 == 0 and t.x % 2 == 0 and t.y % 2 == 0
    for a, b in itertools.combinations(tiles, 2):
        assert not overlap(a, b), (a, b)


def test_grid_shapes() -> None:
    assert grid(0, 640, 360) == []
    [one] = grid(1, 640, 360)
    assert one.w > 600  # one participant fills the picture
    three = grid(3, 640, 360)
    assert three[0].y == three[1].y < three[2].y  # two on top, one centred below
    assert abs((three[2].x + three[2].w / 2) - 320) <= 2
    ten = grid(10, 1280, 720)
    assert len({t.y for t in ten}) == 3 and len({t.w for t in ten}) == 1


def test_speaker_layout_puts_the_first_tile_large() -> None:
    tiles = speaker(4, 1280, 720)
    assert tiles[0].w == 1280 and all(t.h < tiles[0].h / 3 for t in tiles[1:])


def test_fit_keeps_the_aspect_ratio_and_centres() -> None:
    tile = Rect(100, 50, 320, 180)
    box = fit(160, 120, tile)  # 4:3 into 16:9: pillarboxed
    assert box.h == 180 and box.w == 240 and box.x == 140 and box.y == 50
    assert fit(0, 0, tile) == tile

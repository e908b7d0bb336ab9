"""The composed picture's layout: every tile inside the canvas, none overlapping, even sizes."""

from __future__ import annotations

import itertools

import pytest

from services.recorder.layout import Rect, Stage, fit, grid, layer_for, margins, speaker


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


@pytest.mark.parametrize("source", [(160, 120), (320, 180), (120, 160), (1280, 720), (100, 1000), (2, 2)])
@pytest.mark.parametrize("tile", [Rect(10, 20, 628, 354), Rect(0, 0, 1280, 576), Rect(4, 6, 2, 2)])
def test_margins_and_the_fitted_box_cover_the_tile_exactly_once(source: tuple[int, int], tile: Rect) -> None:
    box = fit(*source, tile)
    parts = [box, *margins(tile, box)]
    assert sum(r.w * r.h for r in parts) == tile.w * tile.h
    for r in parts:
        assert r.w > 0 and r.h > 0
        assert (
            tile.x <= r.x and tile.y <= r.y and r.x + r.w <= tile.x + tile.w and r.y + r.h <= tile.y + tile.h
        )
        assert r.x % 2 == 0 and r.y % 2 == 0 and r.w % 2 == 0 and r.h % 2 == 0
    for a, b in itertools.combinations(parts, 2):
        assert not overlap(a, b), (a, b)


def test_layer_for_a_tile_is_the_smallest_that_fills_it() -> None:
    assert [layer_for(h) for h in (100, 180, 181, 354, 360, 500, 1080)] == [180, 180, 360, 360, 360, 720, 720]


def test_grid_stage_keeps_the_order_of_arrival_whoever_speaks() -> None:
    stage = Stage("grid", 1280, 720)
    assert stage.speaker_changed("carol", ["bob"])
    arranged = stage.arrange(["alice", "bob", "carol"])
    assert [o for o, _ in arranged] == ["alice", "bob", "carol"]
    assert [t for _, t in arranged] == grid(3, 1280, 720)


def test_speaker_stage_puts_the_dominant_speaker_in_the_large_tile() -> None:
    stage = Stage("speaker", 1280, 720)
    owners = ["alice", "bob", "carol"]
    # nobody named yet: the first to come
    assert [o for o, _ in stage.arrange(owners)] == ["alice", "bob", "carol"]
    assert stage.speaker_changed("carol", ["bob"])
    arranged = stage.arrange(owners)
    assert [o for o, _ in arranged] == ["carol", "alice", "bob"]
    assert [t for _, t in arranged] == speaker(3, 1280, 720)
    assert not stage.speaker_changed("carol", ["bob"])  # the same event again changes nothing
    # the speaker is not shown (no video yet, or gone): the most recent earlier speaker who is
    assert [o for o, _ in stage.arrange(["alice", "bob"])] == ["bob", "alice"]
    assert [o for o, _ in stage.arrange(["dave"])] == ["dave"]
    with pytest.raises(ValueError):
        Stage("mosaic", 640, 360)


def test_constraints_ask_for_the_layer_each_tile_needs() -> None:
    sources = {n: [f"{n}-v0"] for n in ("alice", "bob", "carol")}
    grid_stage = Stage("grid", 1280, 720)
    c = grid_stage.constraints(grid_stage.arrange(list(sources)), sources, fps=15, expected=3)
    assert c.last_n == -1 and c.on_stage_sources == []
    assert c.constraints is not None and c.default_constraints is not None
    assert {k: v.max_height for k, v in c.constraints.items()} == dict.fromkeys(
        ["alice-v0", "bob-v0", "carol-v0"], 360
    )
    assert all(v.max_frame_rate == 15 for v in c.constraints.values())
    assert c.default_constraints.max_height == 360
    ten = {f"p{i}": [f"p{i}-v0"] for i in range(10)}
    c = grid_stage.constraints(grid_stage.arrange(list(ten)), ten, fps=30, expected=10)
    assert c.constraints is not None and {v.max_height for v in c.constraints.values()} == {180}
    stage = Stage("speaker", 1280, 720)
    stage.speaker_changed("bob", [])
    c = stage.constraints(stage.arrange(list(sources)), sources, fps=15, expected=3)
    assert c.constraints is not None and c.constraints["bob-v0"].max_height == 720
    assert c.constraints["alice-v0"].max_height == c.constraints["carol-v0"].max_height == 180
    assert c.on_stage_sources == ["bob-v0"]

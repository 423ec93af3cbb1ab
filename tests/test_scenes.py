"""Captioned synthetic scenes: determinism, truth of the captions, disjoint splits, visible attributes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bitcompose.data.scenes import (
    COLOURS,
    VOCABULARY,
    SceneConfig,
    SceneObject,
    make_scenes,
    render_scene,
    scene_axis,
    scene_captions,
    scene_splits,
)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(300, seed=7)


def test_shapes_and_types(scenes):
    assert scenes.images.shape == (300, 32, 32, 3) and scenes.images.dtype == np.uint8
    assert len(scenes) == 300 and len(scenes.captions) == len(scenes.objects) == len(scenes.axes) == 300
    t = scenes.images_tensor()
    assert tuple(t.shape) == (300, 3, 32, 32)
    assert np.array_equal(t[5].permute(1, 2, 0).numpy(), scenes.images[5])
    f = scenes.images_float()
    assert float(f.min()) >= -1.0 and float(f.max()) <= 1.0
    assert all(len(c) == 5 for c in scenes.captions)
    assert len(scenes.all_captions()) == 1500


def test_deterministic_by_seed():
    a, b, c = make_scenes(50, seed=3), make_scenes(50, seed=3), make_scenes(50, seed=4)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions and a.objects == b.objects
    assert not np.array_equal(a.images, c.images)
    # the global numpy RNG is untouched
    np.random.seed(0)
    x = np.random.rand()
    np.random.seed(0)
    make_scenes(5, seed=1)
    assert np.random.rand() == x


def test_object_counts_and_layout_geometry(scenes):
    counts = {len(o) for o in scenes.objects}
    assert counts == {1, 2, 3}
    for objs, axis, img in zip(scenes.objects, scenes.axes, scenes.images, strict=True):
        assert scene_axis(objs) == axis
        triples = [(o.shape, o.colour, o.size) for o in objs]
        assert len(set(triples)) == len(triples)  # distinct objects
        for o in objs:
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
        # boxes never overlap
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                a, b = objs[i].box, objs[j].box
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        # the image is exactly the rendering of its objects
        assert np.array_equal(render_scene(objs), img)


def _relation_holds(word: str, a: SceneObject, b: SceneObject) -> bool:
    """Independent check of a relation from the boxes: extents disjoint in one axis, overlapping in the other."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    rows_overlap = ay0 < by1 and by0 < ay1
    cols_overlap = ax0 < bx1 and bx0 < ax1
    return {
        "left": ax1 <= bx0 and rows_overlap,
        "right": bx1 <= ax0 and rows_overlap,
        "above": ay1 <= by0 and cols_overlap,
        "below": by1 <= ay0 and cols_overlap,
    }[word]


def test_captions_true_for_objects(scenes):
    for objs, caps in zip(scenes.objects, scenes.captions, strict=True):
        by_phrase = {o.phrase: o for o in objs}
        for cap in caps:
            words = cap.split()
            assert len(words) <= 17 and set(words) <= set(VOCABULARY)
            # every object is mentioned, and nothing else
            mentioned = [" ".join(words[i : i + 4]) for i in range(len(words) - 3) if words[i] == "a"]
            mentioned = [m for m in mentioned if m in by_phrase]
            assert sorted(mentioned) == sorted(by_phrase)
        if len(objs) == 2:
            first, second = (
                by_phrase[" ".join(caps[0].split()[:4])],
                by_phrase[" ".join(caps[0].split()[-4:])],
            )
            rel = "left" if "left" in caps[0] else "above"
            assert _relation_holds(rel, first, second)
            inverse = {"left": "right", "above": "below"}[rel]
            assert _relation_holds(inverse, second, first)
            assert not _relation_holds({"left": "above", "above": "left"}[rel], first, second)
            assert not _relation_holds({"left": "below", "above": "right"}[rel], first, second)
        if len(objs) == 3:  # "{B} between {A} and {C}": B's box lies strictly between A's and C's on the axis
            w = caps[0].split()
            b, a, c = by_phrase[" ".join(w[:4])], by_phrase[" ".join(w[5:9])], by_phrase[" ".join(w[10:14])]
            rel = "left" if "left" in caps[1] else "above"
            assert _relation_holds(rel, a, b) and _relation_holds(rel, b, c) and _relation_holds(rel, a, c)


def test_captions_hand_case():
    a = SceneObject("circle", "red", "small", x=2, y=13, extent=6)
    b = SceneObject("square", "blue", "large", x=18, y=11, extent=10)
    caps = scene_captions([b, a])  # order of the input does not matter
    assert caps == scene_captions([a, b])
    assert caps[0] == "a small red circle to the left of a large blue square"
    assert caps[1] == "a large blue square to the right of a small red circle"
    assert "there is a small red circle and a large blue square" in caps
    v = scene_captions([dataclasses.replace(a, x=13, y=2), dataclasses.replace(b, x=11, y=18)])
    assert v[0] == "a small red circle above a large blue square"
    with pytest.raises(ValueError, match="ambiguous"):
        scene_axis([a, dataclasses.replace(b, y=20)])  # diagonal: both relations hold
    with pytest.raises(ValueError, match="ambiguous"):
        scene_axis([a, dataclasses.replace(b, x=4)])  # overlapping boxes: neither holds


def test_splits_disjoint_and_stable():
    s = scene_splits(200, 50, 50, seed=1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [200, 50, 50]
    keys = {k: {img.tobytes() for img in s[k].images} for k in s}
    assert len(keys["train"]) == 200  # distinct within a split
    assert (
        not keys["train"] & keys["val"]
        and not keys["train"] & keys["test"]
        and not keys["val"] & keys["test"]
    )
    # a split does not depend on the size of another (except for rare duplicate rejection)
    s2 = scene_splits(100, 50, 10, seed=1)
    assert np.array_equal(s2["train"].images, s["train"].images[:100])
    assert np.array_equal(s2["val"].images, s["val"].images)
    s3 = scene_splits(200, 50, 50, seed=2)
    assert not np.array_equal(s3["val"].images, s["val"].images)


def test_attributes_visible():
    base = SceneObject("square", "red", "large", x=11, y=11, extent=10)
    images = {}
    for colour in COLOURS:
        for shape in ("square", "circle", "triangle", "cross", "diamond"):
            for size, e in (("small", 6), ("large", 10)):
                o = dataclasses.replace(base, shape=shape, colour=colour, size=size, extent=e)
                images[(shape, colour, size)] = render_scene([o]).tobytes()
    assert len(set(images.values())) == len(images)  # every attribute triple gives a different image
    img = render_scene([base])
    assert tuple(img[16, 16]) == COLOURS["red"] and tuple(img[0, 0]) == (0, 0, 0)
    # masks have distinct pixel counts per shape (size 10): the shape is visible, not only the colour
    counts = {
        shape: int((render_scene([dataclasses.replace(base, shape=shape)]).sum(-1) > 0).sum())
        for shape in ("square", "circle", "triangle", "cross")
    }
    assert counts["square"] == 100 and len(set(counts.values())) == 4


def test_config_and_errors():
    s = make_scenes(20, seed=0, config=SceneConfig(min_objects=2, max_objects=2, shapes=("circle", "cross")))
    assert all(len(o) == 2 and {x.shape for x in o} <= {"circle", "cross"} for o in s.objects)
    sub = s.subset([3, 1])
    assert sub.captions == [s.captions[3], s.captions[1]] and np.array_equal(sub.images[1], s.images[1])
    assert len(make_scenes(0, seed=0)) == 0
    with pytest.raises(ValueError, match="max_objects"):
        SceneConfig(max_objects=4)
    with pytest.raises(ValueError, match="unknown shapes"):
        SceneConfig(shapes=("hexagon",))
    with pytest.raises(ValueError, match="jitter"):
        SceneConfig(jitter=3)
    with pytest.raises(ValueError, match="non-negative"):
        make_scenes(-1, seed=0)

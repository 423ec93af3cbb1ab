"""MS-COCO captions loader on a tiny fabricated copy (json + 3 small images)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bitcompose.data.coco import load_coco_captions, resize_square


def _write_coco(root, split="val"):
    (root / "annotations").mkdir(parents=True)
    img_dir = root / f"{split}2017"
    img_dir.mkdir()
    red = np.zeros((20, 40, 3), dtype=np.uint8)
    red[..., 0] = 255  # wide red image
    Image.fromarray(red).save(img_dir / "000000000007.png")
    Image.fromarray(np.full((30, 30), 128, dtype=np.uint8), mode="L").save(img_dir / "000000000003.jpg")
    blue = np.zeros((16, 16, 3), dtype=np.uint8)
    blue[..., 2] = 200
    Image.fromarray(blue).save(img_dir / "000000000005.jpg", quality=95)
    data = {
        "info": {},
        "images": [
            {"id": 7, "file_name": "000000000007.png", "width": 40, "height": 20},
            {"id": 3, "file_name": "000000000003.jpg", "width": 30, "height": 30},
            {"id": 5, "file_name": "000000000005.jpg", "width": 16, "height": 16},
            {"id": 9, "file_name": "000000000009.jpg", "width": 16, "height": 16},  # no captions
        ],
        "annotations": [
            {"id": 12, "image_id": 7, "caption": "A red wall. "},
            {"id": 11, "image_id": 7, "caption": "Something red\n"},
            {"id": 30, "image_id": 3, "caption": "a grey square"},
            {"id": 40, "image_id": 5, "caption": "Blue."},
            {"id": 41, "image_id": 5, "caption": "a dark blue tile"},
        ],
    }
    (root / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(data))
    return root


def test_load_and_group(tmp_path):
    coco = load_coco_captions(_write_coco(tmp_path), "val")
    assert len(coco) == 3 and coco.image_ids == [3, 5, 7]  # sorted by id; image 9 has no captions
    assert coco.captions == [
        ["a grey square"],
        ["Blue.", "a dark blue tile"],
        ["Something red", "A red wall."],
    ]
    assert coco.all_captions()[0] == "a grey square"
    imgs = coco.load_images(size=8)
    assert imgs.shape == (3, 8, 8, 3) and imgs.dtype == np.uint8
    assert np.all(imgs[0] == imgs[0, 0, 0]) and abs(int(imgs[0, 0, 0, 0]) - 128) <= 2  # grey -> RGB
    assert abs(int(imgs[1, 4, 4, 2]) - 200) <= 4 and int(imgs[1, 4, 4, 0]) <= 4
    # the wide red image is padded (mode "pad"): red band in the middle rows, black above and below
    assert imgs[2, 4, 4].tolist() == [255, 0, 0] and imgs[2, 0, 4].tolist() == [0, 0, 0]
    crop = coco.load_image(2, size=8, mode="crop")
    assert np.all(crop[..., 0] == 255)
    sub = coco.subset([2, 0])
    assert sub.image_ids == [7, 3] and sub.image_path(0).name == "000000000007.png"
    assert len(load_coco_captions(tmp_path, "val", max_images=2)) == 2


def test_resize_square_modes():
    im = Image.fromarray(np.arange(12 * 6 * 3, dtype=np.uint8).reshape(6, 12, 3))
    for mode in ("pad", "crop", "stretch"):
        out = resize_square(im, 4, mode)
        assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    up = resize_square(im, 24, "stretch")
    assert up.shape == (24, 24, 3)
    with pytest.raises(ValueError, match="resize mode"):
        resize_square(im, 4, "fit")
    with pytest.raises(ValueError, match="size"):
        resize_square(im, 0)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="root folder not found"):
        load_coco_captions(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="annotations not found"):
        load_coco_captions(tmp_path)
    root = _write_coco(tmp_path / "c")
    with pytest.raises(ValueError, match="unknown COCO split"):
        load_coco_captions(root, "test")
    with pytest.raises(FileNotFoundError, match="annotations not found"):
        load_coco_captions(root, "train")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        load_coco_captions(root, "val", image_dir=root / "missing")
    with pytest.raises(ValueError, match="max_images"):
        load_coco_captions(root, "val", max_images=0)
    coco = load_coco_captions(root, "val")
    (root / "val2017" / "000000000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="image file not found"):
        coco.load_image(1)
    (root / "val2017" / "000000000005.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        coco.load_image(1)
    ann = root / "annotations" / "captions_val2017.json"
    ann.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_coco_captions(root)
    ann.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match="'images'"):
        load_coco_captions(root)
    ann.write_text(
        json.dumps(
            {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "caption": "x"}]}
        )
    )
    with pytest.raises(ValueError, match="image id 2"):
        load_coco_captions(root)
    ann.write_text(
        json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1}]})
    )
    with pytest.raises(ValueError, match="caption"):
        load_coco_captions(root)

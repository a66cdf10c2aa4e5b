"""Decoding, views and image sources."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from featx.errors import ImageDecodeError, InputError
from featx.images import ViewSpec, decode, folder_source, list_source, open_source
from featx.images import normalize_pixels
from featx.images import resize


def pil_resize(arr: np.ndarray, size, box=None) -> np.ndarray:
    """PIL's bilinear resize of ``arr``, cropped to ``box`` first (a block is its own image)."""
    img = Image.fromarray(arr)
    if box is not None:
        img = img.crop(box)
    return np.asarray(img.resize(size, Image.BILINEAR), dtype=np.int16)


def test_resize_matches_pil_bilinear(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    ours = resize(torch.from_numpy(arr), 227).numpy().astype(np.int16)
    assert np.abs(ours - pil_resize(arr, (227, 227))).max() <= 1  # rounding only


def test_decode_modes(tmp_path):
    Image.new("L", (10, 8), 77).save(tmp_path / "gray.png")
    rgba = Image.new("RGBA", (10, 8), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 255, 0))  # fully transparent: shows the white background
    rgba.save(tmp_path / "rgba.png")
    Image.new("CMYK", (10, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # red in CMYK
    Image.new("RGB", (10, 8), (0, 200, 0)).convert("P").save(tmp_path / "pal.gif")

    gray = decode(str(tmp_path / "gray.png"))
    assert gray.shape == (8, 10, 3) and gray.dtype == torch.uint8 and (gray == 77).all()
    rgba = decode(str(tmp_path / "rgba.png"))
    assert rgba[0, 0].tolist() == [255, 255, 255] and rgba[1, 1].tolist() == [255, 0, 0]
    cmyk = decode(str(tmp_path / "cmyk.jpg")).float().mean((0, 1))
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60
    pal = decode(str(tmp_path / "pal.gif"))
    assert abs(int(pal[0, 0, 1]) - 200) <= 8 and pal[0, 0, 0] < 10


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # stored: left half red, right half blue
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    img = decode(str(tmp_path / "rot.jpg"))
    assert img.shape == (40, 20, 3)  # upright: taller than wide
    assert img[2, 10, 0] > 200 and img[37, 10, 2] > 200  # the left half is now on top


@pytest.mark.parametrize("subsampling,progressive", [(0, False), (1, False), (2, False),
                                                     (2, True)])
def test_full_scale_jpegs_decode_to_pillows_pixels(tmp_path, monkeypatch, subsampling,
                                                  progressive):
    """Colour JPEGs that draft decoding would not shrink go through TorchCodec: the same
    pixels as Pillow's own decode, for every chroma subsampling, progressive files, odd sizes,
    all eight EXIF orientations and a bounding box."""
    import featx.images as images

    taken = []
    fast = images._decode_jpeg
    monkeypatch.setattr(images, "_decode_jpeg", lambda p: taken.append(fast(p)) or taken[-1])
    rng = np.random.default_rng(subsampling)
    base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(base).resize((333, 251), Image.BICUBIC))
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.jpg"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(arr).save(path, quality=90, subsampling=subsampling,
                                  progressive=progressive, exif=exif)
        with Image.open(path) as img:
            want = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        got = decode(str(path), (227, 227)).numpy()
        assert got.shape == want.shape and (got == want).all(), orientation
        box = (10.4, 20, 200.6, 150)
        cropped = decode(str(path), (227, 227), box).numpy()
        assert (cropped == want[20:150, 10:201]).all()
    assert len(taken) == 16 and all(t is not None for t in taken)


def test_draft_decoding_of_large_jpegs(tmp_path):
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (25, 32, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((1000, 800), Image.BICUBIC))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    full = decode(str(tmp_path / "big.jpg"))
    fast = decode(str(tmp_path / "big.jpg"), (227, 227))
    assert full.shape == (800, 1000, 3)
    assert fast.shape == (400, 500, 3)  # 1/2 scale: the largest reduction still >= 227
    a = resize(full, 227).float()
    b = resize(fast, 227).float()
    assert (a - b).abs().mean() < 2.0  # same picture, within JPEG noise


def test_decode_errors(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageDecodeError, match="cannot decode image .*bad.jpg"):
        decode(str(tmp_path / "bad.jpg"))
    with pytest.raises(ImageDecodeError, match="missing.png"):
        decode(str(tmp_path / "missing.png"))


def test_view_parsing():
    assert ViewSpec.parse("blocks") == ViewSpec("blocks", (2, 2))
    assert ViewSpec.parse("blocks:2x1").grid == (2, 1)
    assert str(ViewSpec.parse("blocks:3x4")) == "blocks:3x4"
    assert [ViewSpec.parse(v).count() for v in ("whole", "blocks:3x4", "jitter")] == [1, 12, 10]
    assert [ViewSpec.parse(v).count() for v in ("centre", "crops", "crops:3")] == [1, 50, 18]
    assert str(ViewSpec.parse("crops")) == "crops:5"
    for bad in ("block", "blocks:2", "blocks:0x2", "crop", "crops:0", "crops:2x2"):
        with pytest.raises(InputError):
            ViewSpec.parse(bad)


def test_blocks_are_resized_quadrants():
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, (100, 200, 3), dtype=np.uint8)
    out = ViewSpec.parse("blocks:2x2").render(torch.from_numpy(arr), 64, 256)
    assert out.shape == (4, 64, 64, 3)
    # block (row 0, col 1) is the top-right quarter, resized as PIL would
    ref = pil_resize(arr, (64, 64), box=(100, 0, 200, 50))
    assert np.abs(out[1].numpy().astype(np.int16) - ref).max() <= 1
    tall = ViewSpec.parse("blocks:2x1").render(torch.from_numpy(arr), 64, 256)
    ref = pil_resize(arr, (64, 64), box=(0, 50, 200, 100))
    assert np.abs(tall[1].numpy().astype(np.int16) - ref).max() <= 1


def test_jitter_is_five_crops_and_their_mirrors():
    rng = np.random.default_rng(3)
    img = torch.from_numpy(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    out = ViewSpec.parse("jitter").render(img, 227, 256)
    assert out.shape == (10, 227, 227, 3)
    big = resize(img, 256)
    assert torch.equal(out[0], big[:227, :227])  # top-left
    assert torch.equal(out[3], big[29:, 29:])  # bottom-right
    assert torch.equal(out[4], big[14:241, 14:241])  # centre
    for i in range(5):
        assert torch.equal(out[5 + i], out[i].flip(1))  # horizontal mirror


def test_centre_and_ap50_crops_are_the_hand_computed_boxes():
    """Yoo's Alex-FC7: the centre 227 crop of a 256 x 256 resize; AP50: a 5 x 5 grid of 227
    crops at offsets 0, 7, 14, 22, 29 (29 = 256 - 227, evenly spaced) and their mirrors."""
    rng = np.random.default_rng(4)
    img = torch.from_numpy(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    big = resize(img, 256)
    [centre] = ViewSpec.parse("centre").render(img, 227, 256)
    assert torch.equal(centre, big[14:241, 14:241])
    out = ViewSpec.parse("crops:5").render(img, 227, 256)
    assert out.shape == (50, 227, 227, 3)
    offsets = [0, 7, 14, 22, 29]  # round(i * 29 / 4)
    boxes = [(y, x) for y in offsets for x in offsets]
    for n, (y, x) in enumerate(boxes):
        assert torch.equal(out[n], big[y:y + 227, x:x + 227]), (n, y, x)
        assert torch.equal(out[25 + n], out[n].flip(1))
    assert torch.equal(out[12], centre)  # the middle of the grid is the centre crop
    with pytest.raises(InputError, match="need a resize to at least"):
        ViewSpec.parse("crops").render(img, 300, 256)


def test_normalize_layout_and_bgr():
    red = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    red[..., 0] = 255
    x = normalize_pixels(red, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (1, 3, 4, 4) and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([2.0, -2.0, -2.0]))
    bgr = normalize_pixels(red, (0.5, 0.4, 0.3), (1 / 255, 1 / 255, 1 / 255), bgr=True)
    # Caffe: BGR order, 0..255 minus the mean pixel
    assert torch.allclose(bgr[0, :, 0, 0], torch.tensor([-0.3 * 255, -0.4 * 255, 0.5 * 255]))


@pytest.mark.parametrize("bgr", [False, True])
def test_normalize_equals_the_per_pixel_formula(bgr):
    batch = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 5, 7, 3),
                                                                dtype=np.uint8))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    naive = torch.empty(2, 3, 5, 7, dtype=torch.float64)
    for c in range(3):
        src = 2 - c if bgr else c  # BGR: the network's channel c is the image's 2 - c
        naive[:, c] = (batch[..., src].double() / 255 - mean[src]) / std[src]
    got = normalize_pixels(batch, mean, std, bgr)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got.double() - naive).abs().max() < 1e-5  # float32 rounding of values up to 2.7


def test_sources(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for name in ("a/x.jpg", "a/sub/y.PNG", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    src = folder_source(tmp_path / "a")
    assert [r.id for r in src.records] == ["sub/y.PNG", "x.jpg"]
    lst = tmp_path / "list.txt"
    lst.write_text("# images\n/data/1.jpg\n\n/data/2.jpg\n")
    assert [r.path for r in open_source([str(lst)]).records] == ["/data/1.jpg", "/data/2.jpg"]
    lst.write_text("./p/1.jpg\np//2.jpg\n")  # ids are normalised paths
    assert [r.id for r in open_source([str(lst)]).records] == ["p/1.jpg", "p/2.jpg"]
    with pytest.raises(InputError, match="occurs twice"):
        list_source(["a.jpg", "a.jpg"], "list")
    with pytest.raises(InputError, match="does not exist"):
        open_source([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found in folder"):
        open_source([str(tmp_path / "empty")])


def test_pyramid_sizes_grow_by_sqrt2():
    assert ViewSpec.parse("pyramid").sizes(227) == [227, 321, 454, 642, 908, 1284, 1816]
    assert ViewSpec.parse("pyramid:3").sizes(224) == [224, 317, 448]
    assert str(ViewSpec.parse("pyramid:3")) == "pyramid:3"
    with pytest.raises(InputError):
        ViewSpec.parse("pyramid:0")

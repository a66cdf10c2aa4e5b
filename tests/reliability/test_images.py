"""Hostile and unusual images: every bad one is named, skipped and recorded with --skip-bad,
and a one-line error without; unusual but valid ones decode to the right pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featx.images import decode, folder_source
from featx.io import read_header
from tests.reliability.conftest import featx_process

pytestmark = pytest.mark.reliability


def _bad_files(d):
    """name -> writer of a file that cannot be used."""
    jpeg = d / "ok.jpg"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(jpeg)
    data = jpeg.read_bytes()
    return {
        "zero.jpg": lambda p: p.write_bytes(b""),
        "text.jpg": lambda p: p.write_text("not an image\n"),
        "truncated.jpg": lambda p: p.write_bytes(data[: len(data) // 3]),
        "random.png": lambda p: p.write_bytes(os.urandom(2000)),
        "dangling.jpg": lambda p: p.symlink_to(d / "does-not-exist.jpg"),
        "tiny.png": lambda p: Image.new("RGB", (1, 1)).save(p),  # too small for blocks:2x2
    }


@pytest.mark.parametrize("name", ["zero.jpg", "text.jpg", "truncated.jpg", "random.png",
                                  "dangling.jpg", "tiny.png"])
def test_bad_image_is_named_skipped_and_recorded(cli, tmp_path, name):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (300, 200), (90, 40, 20)).save(d / "good.png")
    _bad_files(d)[name](d / name)
    (d / "ok.jpg").unlink()
    args = ["extract", d, "--weights", "none", "--workers", "1", "--layers", "conv5",
            "--views", "whole,blocks:2x2"]
    res = cli(*args, "-o", tmp_path / "a", ok=False)
    assert res.exit_code == 1 and res.stderr.startswith("Error: ")
    assert name in res.stderr and "--skip-bad" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    res = cli(*args, "--skip-bad", "-o", tmp_path / "b")
    head = read_header(res.stdout.split()[0])
    assert head["ids"] == ["good.png"] and head["skipped_ids"] == [name]


def test_dangling_symlink_is_a_record_not_dropped(tmp_path):
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert [r.id for r in folder_source(tmp_path).records] == ["a.png", "gone.jpg"]


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_bit_depth_images_are_scaled_to_8_bits(tmp_path, mode):
    ramp = np.linspace(0, 1, 64 * 32).reshape(32, 64)
    if mode == "F":
        img, path = Image.fromarray(ramp.astype(np.float32), "F"), tmp_path / "f.tiff"
    else:
        arr = np.rint(ramp * 65535).astype(np.uint16 if mode == "I;16" else np.int32)
        img = Image.fromarray(arr)  # uint16 -> I;16, int32 -> I
        path = tmp_path / ("x.png" if mode == "I;16" else "x.tiff")
    img.save(path)
    got = decode(str(path)).numpy()
    assert got.shape == (32, 64, 3)
    np.testing.assert_allclose(got[..., 0], ramp * 255, atol=1)  # not clipped to white
    assert abs(got.mean() - 127.5) < 2


def test_16_bit_rgb_png(tmp_path):
    """Pillow reads 48-bit PNGs as 8-bit RGB; the mean stays mid-grey."""
    import struct
    import zlib

    h, w = 16, 16
    row = np.full((w, 3), 32768, ">u2").tobytes()
    raw = b"".join(b"\x00" + row for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    (tmp_path / "rgb16.png").write_bytes(png)
    assert abs(decode(str(tmp_path / "rgb16.png")).float().mean().item() - 128) < 1.5


@pytest.mark.parametrize("kind", ["cmyk", "palette", "alpha", "exif", "grey", "huge"])
def test_unusual_valid_images_decode_upright_rgb(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "cmyk":
        path = tmp_path / "cmyk.jpg"
        Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path)  # red
    elif kind == "palette":
        Image.new("RGB", (40, 30), (0, 0, 255)).convert("P").save(path)
    elif kind == "alpha":
        Image.new("RGBA", (40, 30), (0, 0, 0, 0)).save(path)  # transparent: white
    elif kind == "exif":
        path = tmp_path / "exif.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated 90 degrees: 40x30 stored, 30x40 shown
        Image.new("RGB", (40, 30), (0, 128, 0)).save(path, exif=exif)
    elif kind == "grey":
        Image.new("L", (40, 30), 77).save(path)
    else:  # very large dimensions decode (draft mode keeps JPEGs cheap)
        path = tmp_path / "huge.jpg"
        Image.new("RGB", (8000, 6000), (50, 50, 50)).save(path, quality=50)
    img = decode(str(path), (227, 227)).numpy()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    expect = {"cmyk": (255, 0, 0), "palette": (0, 0, 255), "alpha": (255, 255, 255),
              "exif": (0, 128, 0), "grey": (77, 77, 77), "huge": (50, 50, 50)}[kind]
    np.testing.assert_allclose(img.reshape(-1, 3).mean(0), expect, atol=6)
    if kind == "exif":
        assert img.shape[:2] == (40, 30)


@pytest.mark.parametrize("torchcodec", ["refuses", "missing"])
def test_jpeg_that_torchcodec_cannot_decode_falls_back_to_pillow(tmp_path, monkeypatch,
                                                                 torchcodec):
    """A full-scale colour JPEG normally goes through TorchCodec; where it raises (a variant
    it lacks) or is not installed, Pillow decodes the file to the same pixels."""
    import featx.images as images

    def refuse(path, mode):
        raise RuntimeError("unsupported JPEG variant")

    arr = np.random.default_rng(5).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=90)
    want = decode(str(tmp_path / "a.jpg")).numpy()
    monkeypatch.setattr(images, "_torchcodec_jpeg", refuse if torchcodec == "refuses" else None)
    got = decode(str(tmp_path / "a.jpg")).numpy()
    with Image.open(tmp_path / "a.jpg") as img:
        assert (got == np.asarray(img.convert("RGB"))).all() and (got == want).all()


def _fifo_case(tmp_path: Path, where: str) -> tuple[list, str]:
    """A FIFO named fifo.jpg beside good.png: inside the folder given, named in a path list,
    or given as an argument. (extract's arguments, the FIFO's id)."""
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (300, 200), (90, 40, 20)).save(d / "good.png")
    os.mkfifo(d / "fifo.jpg")
    if where == "folder":
        return [d], "fifo.jpg"
    if where == "list":
        (tmp_path / "list.txt").write_text(f"{d / 'good.png'}\n{d / 'fifo.jpg'}\n")
        return [tmp_path / "list.txt"], os.path.normpath(d / "fifo.jpg")
    return [d / "good.png", d / "fifo.jpg"], os.path.normpath(d / "fifo.jpg")


@pytest.mark.parametrize("where", ["folder", "list", "argument"])
def test_a_fifo_is_a_bad_image_never_opened(tmp_path, where):
    """Issue 26.5: a FIFO (opening one blocks until a writer comes) is refused by name,
    skipped and recorded with --skip-bad; extract never hangs on it."""
    inputs, fifo_id = _fifo_case(tmp_path, where)
    args = ["-q", "extract", *inputs, "--weights", "none", "--workers", "0", "--input-size",
            "64"]
    proc = featx_process(*args, "-o", tmp_path / "a")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and err.startswith("Error: ") and "a FIFO" in err
    assert "fifo.jpg" in err and len(err.strip().splitlines()) == 1
    proc = featx_process(*args, "--skip-bad", "-o", tmp_path / "b")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    head = read_header(out.split()[0])
    assert head["skipped_ids"] == [fifo_id] and len(head["ids"]) == 1

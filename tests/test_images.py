"""nst.images: every PIL mode a user may hand us loads as uint8 RGB (H, W, 3); sizes; PNG metadata.

The CLI side of the same cases (errors through ``python -m nst.run``) is in test_bad_input.py; one handled
case (RGBA content, CMYK 1500 px style, 64 px output) runs through the real CLI at the end of this file.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst.errors import UserError
from nst.images import load_image, png_text, read_image, resize, save_png, target_size, to_uint8


def assert_rgb_uint8(arr: np.ndarray, h: int, w: int):
    assert arr.dtype == np.uint8
    assert arr.shape == (h, w, 3)


def test_rgb_jpeg_sample(content_path):
    arr = read_image(content_path)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert 30 < arr.mean() < 220 and arr.std() > 20  # a photo, not a blank


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[:, :5] = [200, 30, 40, 255]  # opaque: kept as is
    rgba[:, 5:8] = [0, 0, 0, 0]  # transparent: white
    rgba[:, 8:] = [0, 0, 200, 128]  # half: halfway to white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    arr = read_image(tmp_path / "a.png")
    assert_rgb_uint8(arr, 8, 10)
    assert (arr[:, :5] == [200, 30, 40]).all()
    assert (arr[:, 5:8] == 255).all()
    a = 128 / 255
    want = np.array([255 * (1 - a), 255 * (1 - a), 200 * a + 255 * (1 - a)])
    assert np.abs(arr[:, 8:].astype(float) - want).max() <= 1.5


def test_greyscale_l_becomes_three_equal_channels(tmp_path):
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (5, 1))  # (5, 16)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    arr = read_image(tmp_path / "g.png")
    assert_rgb_uint8(arr, 5, 16)
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], grey)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (6, 4))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.paste(1, (3, 0, 6, 4))
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    arr = read_image(tmp_path / "p.png")
    assert_rgb_uint8(arr, 4, 6)
    assert (arr[:, :3] == 255).all()  # index 0 is transparent -> white
    assert (arr[:, 3:] == [0, 255, 0]).all()


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:16] = [255, 0, 0]
    rgb[16:] = [0, 128, 255]
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as check:
        assert check.mode == "CMYK"
    arr = read_image(tmp_path / "c.jpg")
    assert_rgb_uint8(arr, 32, 32)
    # JPEG is lossy; away from the block edge the colours come back within a few levels
    assert np.abs(arr[2:12, 2:30].astype(int) - [255, 0, 0]).max() <= 8
    assert np.abs(arr[20:30, 2:30].astype(int) - [0, 128, 255]).max() <= 8


def test_16bit_png_scaled_to_8bit(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "i16.png")
    with Image.open(tmp_path / "i16.png") as check:
        assert check.mode == "I;16"
    arr = read_image(tmp_path / "i16.png")
    assert_rgb_uint8(arr, 64, 64)
    want = ramp.astype(np.float64) / 65535 * 255
    assert np.abs(arr[..., 0] - want).max() <= 1.0  # scaled, not clipped at 255
    assert arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255
    np.testing.assert_array_equal(arr[..., 0], arr[..., 2])


def test_read_refuses_over_the_pixel_limit_from_the_header(tmp_path):
    Image.new("RGB", (40, 30), "red").save(tmp_path / "r.png")
    assert read_image(tmp_path / "r.png", max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(UserError, match=r"r\.png is 40x30 = 1,200 pixels.*limit of 1,199.*max_input_pixels"):
        read_image(tmp_path / "r.png", max_pixels=1199)


def huge_png(path: Path, side: int = 12000) -> Path:
    """A 1-bit side x side PNG, tiny on disk (~20 KB) but `side`^2 pixels when decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    body = zlib.compress(row * side, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_huge_dimension_png_refused_without_decoding(tmp_path, recwarn):
    path = huge_png(tmp_path / "huge.png")
    assert path.stat().st_size < 100_000
    with pytest.raises(UserError, match="huge.png is 12000x12000"):
        read_image(path, "content image")
    # PIL's own DecompressionBombWarning is not passed on: our one-line error says it all
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize("maker, needle", [
    (lambda p: p.write_text("not an image"), "not an image file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.mkdir(), "folder"),
    (lambda p: None, "not found"),
])
def test_read_errors(tmp_path, maker, needle):
    path = tmp_path / "x.jpg"
    maker(path)
    with pytest.raises(UserError, match=needle):
        read_image(path, "style image")


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_truncated_image_is_a_clear_error(tmp_path, content_path, suffix):
    with Image.open(content_path) as img:
        img.save(tmp_path / f"full.{suffix}")
    data = (tmp_path / f"full.{suffix}").read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=rf"cut\.{suffix} could not be decoded \(truncated or corrupt\?\)"):
        read_image(cut, "content image")


# ---------------------------------------------------------------- sizes


def test_target_size_long_side_and_explicit():
    assert target_size((480, 640), 64) == (64, 48)
    assert target_size((640, 480), 64) == (48, 64)
    assert target_size((100, 100), 37) == (37, 37)
    assert target_size((480, 640), [50, 70]) == (50, 70)


def test_load_image_resizes_to_long_side(content_path, style_path):
    for path, size in ((content_path, 64), (style_path, 96)):
        img = load_image(path, size)
        assert img.dtype == np.float32 and max(img.shape[:2]) == size and img.shape[2] == 3
        assert 0 <= img.min() and img.max() <= 255
    assert load_image(content_path, [40, 30]).shape == (30, 40, 3)


def test_very_different_sizes_load(tmp_path, style_path):
    """A 1500 px style and a 64 px content come out at the sizes the run needs."""
    with Image.open(style_path) as img:
        big = img.resize((1500, round(1500 * img.height / img.width)))
    big.save(tmp_path / "big.png")
    out = load_image(tmp_path / "big.png", 64)
    assert max(out.shape[:2]) == 64
    assert abs(out.mean() - np.asarray(big, np.float32).mean()) < 10  # same picture, smaller


def test_resize_refuses_sides_under_16px():
    with pytest.raises(UserError, match="at least 16 px"):
        resize(np.zeros((10, 1000, 3), np.uint8), (128, 1), "content image x.png")
    assert resize(np.zeros((10, 1000, 3), np.uint8), (16, 16)).shape == (16, 16, 3)


def test_extreme_aspect_ratio_through_load_image(tmp_path):
    Image.new("RGB", (2000, 20), "blue").save(tmp_path / "strip.png")
    with pytest.raises(UserError, match=r"strip\.png would be 128x1 px"):
        load_image(tmp_path / "strip.png", 128, "content image")


# ---------------------------------------------------------------- saving


def test_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(to_uint8(np.array([-5.0, 0.4, 0.6, 254.5, 300.0])), [0, 0, 1, 254, 255])


def test_save_png_round_trip_with_text(tmp_path):
    img = np.random.default_rng(0).uniform(0, 255, (12, 17, 3)).astype(np.float32)
    text = {"nst:config": "a: 1\nb: [1, 2]\n", "nst:note": "ünïcode ok"}
    save_png(img, tmp_path / "o.png", text)
    back = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    np.testing.assert_array_equal(back, to_uint8(img))
    assert png_text(tmp_path / "o.png") == text
    assert os.stat(tmp_path / "o.png").st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]  # no temp file left behind


# ---------------------------------------------------------------- through the CLI


@pytest.mark.slow
def test_cli_rgba_content_and_huge_cmyk_style(tmp_path, run_cli, content_path, style_path, make_config):
    """Handled, not an error: RGBA content, a 1500 px CMYK JPEG style, a 64 px output."""
    with Image.open(content_path) as img:
        small = img.convert("RGBA").resize((200, 150))
    small.putalpha(200)
    small.save(tmp_path / "content_rgba.png")
    with Image.open(style_path) as img:
        img.convert("RGB").resize((1500, 938)).convert("CMYK").save(tmp_path / "style_cmyk.jpg", quality=90)
    cfg = make_config(f"content: {tmp_path / 'content_rgba.png'}\nstyle: {tmp_path / 'style_cmyk.jpg'}\n",
                      name="handled.yaml")
    out = tmp_path / "out"
    res = run_cli([cfg, "--output", out, "--set", "model.network=vgg16", "--set", "image.size=64",
                   "--set", "optimizer.iterations=3", "--set", "snapshots=[]"])
    assert res.rc == 0, res.err
    assert "Traceback" not in res.err and "error:" not in res.err
    assert "style_cmyk.jpg: 1500x938 -> 64x40" in res.err
    result = np.asarray(Image.open(out / "result.png"))
    assert result.shape == (48, 64, 3)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["iterations_done"] == 3


def test_the_srgb_profile_is_the_same_bytes_in_every_process():
    """Two runs of one config must write byte-identical result.png files: the embedded ICC profile carries no
    creation time (LittleCMS stamps one), and a viewer still reads it as sRGB."""
    import io
    import subprocess
    import sys

    from PIL import ImageCms

    code = "import sys; from nst.print_files import srgb_icc; sys.stdout.buffer.write(srgb_icc())"
    a, b = (subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout for _ in range(2))
    assert a == b and len(a) > 128
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(a)))

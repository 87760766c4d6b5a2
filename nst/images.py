"""The only image disk I/O: load (any mode, with clear errors), resize, save PNG with metadata.

Images in memory are float32 arrays (H, W, 3), RGB, 0..255 — the scale of the Caffe VGG
the paper used, so no rescaling is needed before the network.

Decoding is strict: Pillow's lenient loading (``LOAD_TRUNCATED_IMAGES``) stays off, and a PNG whose
compressed pixel data holds fewer rows than its header declares (which Pillow fills with black
without a word) is refused. Float images (mode ``F``, e.g. 32-bit TIFF) in 0..1 are scaled to 0..255.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from nst.errors import UserError

# The smallest side the network can take: 4 poolings before conv5_1 leave 1/16 of it.
MIN_SIDE = 16


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: alpha composited on white, 16-bit scaled down, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes span 0..65535 however dark the picture; 32-bit "I" may hold 8-bit data
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("float image holds NaN or infinite values")
        # float images conventionally span 0..1 (32-bit TIFF, EXR-like data); larger values are 0..255 data
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


# Adam7 passes: (x0, y0, dx, dy)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def png_missing_rows(path: Path) -> str | None:
    """Why a PNG's pixel data is shorter than its header declares, or None when it is complete.

    Pillow stops quietly where the compressed data ends and leaves the remaining rows black; this
    inflates the IDAT stream (in pieces, never all at once) and compares its length with the size
    the header promises.
    """
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        inflate, got, expected, ended = zlib.decompressobj(), 0, None, False
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            data = f.read(length)
            f.read(4)  # CRC: Pillow checks it
            if kind == b"IHDR" and len(data) >= 13:
                w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[:13])
                bits = depth * _PNG_CHANNELS.get(colour, 1)
                passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
                expected = 0
                for x0, y0, dx, dy in passes:
                    pw, ph = math.ceil(max(0, w - x0) / dx), math.ceil(max(0, h - y0) / dy)
                    if pw and ph:
                        expected += ph * (1 + math.ceil(pw * bits / 8))  # a filter byte per row
            elif kind == b"IDAT":
                try:
                    chunk = inflate.decompress(data, 1 << 22)
                    while True:
                        got += len(chunk)
                        if not inflate.unconsumed_tail or got > (expected or 0):
                            break
                        chunk = inflate.decompress(inflate.unconsumed_tail, 1 << 22)
                except zlib.error as exc:
                    return f"its pixel data is corrupt ({exc})"
                ended = ended or inflate.eof
            elif kind == b"IEND":
                break
        if expected is not None and got < expected:
            return (f"its pixel data ends after {got:,} of {expected:,} bytes"
                    f"{'' if ended else ' (compressed stream cut off)'}: rows are missing")
    return None


def read_image(path: str | Path, what: str = "image", max_pixels: int = 50_000_000) -> np.ndarray:
    """Read ``path`` as uint8 RGB (H, W, 3). ``what`` names the role in error messages."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if path.is_dir():
        raise UserError(f"{what} is a folder, not an image: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"{what} is an empty file: {path}")
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # missing pixel data is an error, never black filler
    try:
        with warnings.catch_warnings():
            # image.max_input_pixels (below) decides; PIL's DecompressionBombWarning would be a second stderr line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size  # read from the header before any pixel is decoded
                if w * h > max_pixels:
                    raise UserError(f"{what} {path.name} is {w}x{h} = {w * h:,} pixels, over the limit of "
                                    f"{max_pixels:,} (image.max_input_pixels)")
                img.load()
                missing = png_missing_rows(path) if img.format == "PNG" else None
                if missing:
                    raise UserError(f"{what} {path} is truncated: {missing}")
                upright = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
                return np.asarray(_to_rgb(upright), dtype=np.uint8)
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(f"{what} {path.name} is too large to decode safely (decompression bomb)") from None
    except UnidentifiedImageError:
        raise UserError(f"{what} is not an image file PIL can read: {path}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UserError(f"{what} {path} could not be decoded (truncated or corrupt?): {exc}") from None


def target_size(shape_hw: tuple[int, int], size: int | list[int]) -> tuple[int, int]:
    """(width, height) for an image of ``shape_hw``: ``size`` is a long side or [width, height]."""
    h, w = shape_hw
    if isinstance(size, list):
        return int(size[0]), int(size[1])
    scale = size / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize(img: np.ndarray, wh: tuple[int, int], what: str = "image", resample=Image.LANCZOS) -> np.ndarray:
    """Resize a (H, W, 3) image to ``wh`` = (width, height); refuse sizes the network cannot take."""
    if min(wh) < MIN_SIDE:
        raise UserError(f"{what} would be {wh[0]}x{wh[1]} px after resizing; both sides must be at least "
                        f"{MIN_SIDE} px (is its aspect ratio extreme, or image.size too small?)")
    src = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)) if img.dtype != np.uint8 else Image.fromarray(img)
    if src.size == tuple(wh):
        return np.asarray(src, dtype=np.float32)
    return np.asarray(src.resize(tuple(wh), resample), dtype=np.float32)


def load_image(path: str | Path, size: int | list[int], what: str = "image",
               max_pixels: int = 50_000_000) -> np.ndarray:
    """Read and resize in one step: float32 (H, W, 3), 0..255."""
    img = read_image(path, what, max_pixels)
    return resize(img, target_size(img.shape[:2], size), f"{what} {Path(path).name}")


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _write_atomic(path: Path, write) -> None:
    """``write(tmp_path)`` then rename over ``path``, so a crash never leaves a half-written image."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are for sharing
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_png(img: np.ndarray, path: str | Path, text: dict[str, str] | None = None, bit_depth: int = 8,
             icc: bool = False, dpi: float | None = None) -> None:
    """Write a PNG atomically; ``bit_depth`` 16, the sRGB ICC profile and DPI for prints (nst.print_files)."""
    from nst.print_files import encode_png16, srgb_icc

    path = Path(path)
    profile = srgb_icc() if icc else None
    if bit_depth == 16:
        data = encode_png16(img, text, profile, dpi)
        _write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))
        return
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    extra = {**({"icc_profile": profile} if profile else {}), **({"dpi": (dpi, dpi)} if dpi else {})}
    _write_atomic(path, lambda tmp: Image.fromarray(to_uint8(img)).save(tmp, format="PNG", pnginfo=info, **extra))


def save_tiff(img: np.ndarray, path: str | Path, bit_depth: int = 16, icc: bool = True, dpi: float | None = None,
              description: str | None = None) -> None:
    """Write an RGB TIFF (8 or 16 bits a sample, deflate) atomically, with the sRGB ICC profile and DPI."""
    from nst.print_files import encode_tiff, srgb_icc

    data = encode_tiff(img, bit_depth, srgb_icc() if icc else None, dpi, description)
    _write_atomic(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def png_text(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG written by :func:`save_png`."""
    with Image.open(path) as img:
        img.load()
        return dict(getattr(img, "text", {}))

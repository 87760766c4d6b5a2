"""The only image disk I/O: load (any mode, with clear errors), resize, save PNG with metadata.

Images in memory are float32 arrays (H, W, 3), RGB, 0..255 — the scale of the Caffe VGG
the paper used, so no rescaling is needed before the network.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

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
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | Path, what: str = "image", max_pixels: int = 50_000_000) -> np.ndarray:
    """Read ``path`` as uint8 RGB (H, W, 3). ``what`` names the role in error messages."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if path.is_dir():
        raise UserError(f"{what} is a folder, not an image: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"{what} is an empty file: {path}")
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

"""Print files in memory: 16-bit RGB PNG and 8/16-bit RGB TIFF, with the sRGB ICC profile and DPI.

Pillow cannot hold 16-bit RGB (its RGB is 8 bits a sample), so the two formats are encoded here with
``zlib`` and ``struct``: PNG (ISO/IEC 15948: IHDR, iCCP, pHYs, iTXt, IDAT with the Sub filter, IEND)
and baseline TIFF 6.0 (one IFD, Adobe deflate strips, ICC profile tag 34675, resolution in inches).
Both give bytes; :mod:`nst.images` writes them to disk (atomically), as it does every image.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

INCH = 0.0254  # m


# LittleCMS stamps a profile with the time it was made (header bytes 24..35): a fixed date keeps two runs of one
# config byte-identical files (the profile ID, bytes 84..99, stays 0 = "not computed", which the date does not enter).
PROFILE_DATE = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)


@lru_cache(maxsize=1)
def srgb_icc() -> bytes:
    """The sRGB ICC profile, as Pillow's LittleCMS builds it, dated 2000-01-01 whenever it was built."""
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = PROFILE_DATE
    return bytes(profile)


def to_uint16(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) float 0..255 -> uint16 0..65535 (x 257, so 255 -> 65535 and v -> v * 257 exactly)."""
    return np.clip(np.rint(np.asarray(img, np.float64) * 257.0), 0, 65535).astype(np.uint16)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png16(img: np.ndarray, text: dict[str, str] | None = None, icc: bytes | None = None,
                 dpi: float | None = None, level: int = 6) -> bytes:
    """A 16-bit RGB PNG of ``img`` ((H, W, 3) float 0..255 or uint16)."""
    data = img if img.dtype == np.uint16 else to_uint16(img)
    h, w = data.shape[:2]
    raw = np.ascontiguousarray(data, ">u2").view(np.uint8).reshape(h, w * 6)  # big-endian samples, 6 bytes a pixel
    sub = raw.copy()
    sub[:, 6:] -= raw[:, :-6]  # filter 1 (Sub): each byte minus the byte one pixel left, mod 256
    rows = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))]
    if icc:
        out.append(_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc)))
    if dpi:
        ppm = int(round(dpi / INCH))
        out.append(_chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)))
    for key, value in (text or {}).items():
        out.append(_chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")))
    out.append(_chunk(b"IDAT", zlib.compress(rows.tobytes(), level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


# TIFF field types
SHORT, LONG, RATIONAL, ASCII, UNDEFINED = 3, 4, 5, 2, 7
_FORMATS = {SHORT: "H", LONG: "I", RATIONAL: "II", ASCII: "s", UNDEFINED: "s"}


def encode_tiff(img: np.ndarray, bit_depth: int = 16, icc: bytes | None = None, dpi: float | None = None,
                description: str | None = None, rows_per_strip: int = 64, level: int = 6) -> bytes:
    """A little-endian RGB TIFF of ``img`` ((H, W, 3) float 0..255), 8 or 16 bits a sample, deflate strips."""
    if bit_depth == 16:
        data = to_uint16(img).astype("<u2")
    else:
        data = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    h, w = data.shape[:2]
    strips = [zlib.compress(data[r:r + rows_per_strip].tobytes(), level) for r in range(0, h, rows_per_strip)]
    res = (int(round(dpi * 10000)), 10000) if dpi else (72, 1)
    tags: list[tuple[int, int, object]] = [
        (256, LONG, [w]), (257, LONG, [h]), (258, SHORT, [bit_depth] * 3), (259, SHORT, [8]),
        (262, SHORT, [2]), (273, LONG, None), (277, SHORT, [3]), (278, LONG, [rows_per_strip]),
        (279, LONG, [len(s) for s in strips]), (282, RATIONAL, [res]), (283, RATIONAL, [res]), (284, SHORT, [1]),
        (296, SHORT, [2]),
    ]
    if description:
        tags.append((270, ASCII, description.encode("ascii", "backslashreplace") + b"\x00"))
    if icc:
        tags.append((34675, UNDEFINED, icc))
    tags.sort()
    body = bytearray(b"II*\x00\x00\x00\x00\x00")
    offsets = []
    for s in strips:
        offsets.append(len(body))
        body += s
        body += b"\x00" * (len(body) % 2)  # word-aligned
    entries = []
    for code, kind, values in tags:
        values = offsets if code == 273 else values
        if kind in (ASCII, UNDEFINED):
            count, packed = len(values), bytes(values)
        elif kind == RATIONAL:
            count, packed = len(values), b"".join(struct.pack("<II", *v) for v in values)
        else:
            count, packed = len(values), struct.pack(f"<{len(values)}{_FORMATS[kind]}", *values)
        if len(packed) <= 4:
            entries.append(struct.pack("<HHI", code, kind, count) + packed.ljust(4, b"\x00"))
        else:
            entries.append(struct.pack("<HHII", code, kind, count, len(body)))
            body += packed
            body += b"\x00" * (len(body) % 2)
    ifd = len(body)
    body[4:8] = struct.pack("<I", ifd)
    body += struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return bytes(body)

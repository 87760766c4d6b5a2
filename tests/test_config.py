"""nst.config: defaults, shipped configs, --set overrides, path resolution, validation messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from nst.config import NSTConfig, StyleImage, defaults_yaml, load_config, to_dict
from nst.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").glob("*.yaml"))
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
C, S = DATA / "content" / "tubingen.jpg", DATA / "style" / "starry_night.jpg"


def cfg_file(tmp_path: Path, text: str, name: str = "c.yaml", sub: str = "") -> Path:
    folder = tmp_path / sub if sub else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def minimal(tmp_path: Path, extra: str = "") -> Path:
    return cfg_file(tmp_path, f"content: {C}\nstyle: {S}\n{extra}")


def error_of(fn, *args, **kw) -> str:
    with pytest.raises(UserError) as exc:
        fn(*args, **kw)
    msg = str(exc.value)
    assert "\n" not in msg, "errors are one line"
    return msg


# ---------------------------------------------------------------- defaults


def test_defaults_load_and_are_the_schema_defaults(tmp_path):
    cfg = load_config(minimal(tmp_path))
    want = dataclasses.replace(NSTConfig(), content=str(C), style=[StyleImage(str(S), 1.0)])
    assert cfg == want
    assert cfg.layers.content == {"conv4_2": 1.0}
    assert set(cfg.layers.style) == {"conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"}
    assert cfg.optimizer.method == "lbfgs" and cfg.model.pooling == "avg"


def test_defaults_yaml_round_trips_through_the_loader(tmp_path):
    """`--defaults` prints every key; that text, plus content and style, loads back to the same config."""
    text = defaults_yaml()
    assert yaml.safe_load(text) == to_dict(NSTConfig())
    raw = yaml.safe_load(text)
    raw.update(content=str(C), style=[{"path": str(S), "weight": 1.0, "mask": None}], output_dir=str(tmp_path / "o"))
    cfg = load_config(cfg_file(tmp_path, yaml.safe_dump(raw)))
    assert to_dict(cfg) == raw


def test_without_content_or_style_is_refused():
    assert "content" in error_of(load_config, None)
    assert "style" in error_of(load_config, None, [f"content={C}"])


def test_config_is_frozen(tmp_path):
    cfg = load_config(minimal(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


# ---------------------------------------------------------------- shipped configs


def test_there_are_shipped_configs():
    assert SHIPPED, "configs/*.yaml is empty"


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        if isinstance(v, dict) and not prefix.startswith("layers"):
            out |= _keys(v, f"{prefix}{k}.")
        else:
            out.add(prefix + k)
    return out


# Configs of other schemas live in configs/ too; each is loaded with its owner's loader (a top-level key says which).
OTHER_SCHEMAS = {"figure": ("experiments.common", "load_figure_config"),
                 "doodle": ("doodle.config", "load_doodle_config"),
                 "base": ("experiments.sweep.spec", "load_sweep"),  # a sweep file (figure configs have `figure` first)
                 "video": ("nst.video.config", "load_video_config")}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_loads(path):
    import importlib

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(raw, dict), path.name
    kind = next((k for k in OTHER_SCHEMAS if k in raw), None)
    if kind:
        module, func = OTHER_SCHEMAS[kind]
        extra = [["content=clip.mp4"]] if kind == "video" else []  # a video's content is the --input clip
        cfg = getattr(importlib.import_module(module), func)(path, *extra)
        if kind == "figure":  # a figure starts from a run config (nst or doodle), which must load too
            base = path.parent / cfg.base
            base_kind = "doodle" if "doodle" in yaml.safe_load(base.read_text(encoding="utf-8")) else None
            if base_kind:
                getattr(importlib.import_module(OTHER_SCHEMAS[base_kind][0]), OTHER_SCHEMAS[base_kind][1])(base)
            else:
                load_config(base)
        return
    cfg = load_config(path)
    assert Path(cfg.content).is_file(), f"{path.name}: content {cfg.content} missing"
    for s in cfg.style:
        assert Path(s.path).is_file(), f"{path.name}: style {s.path} missing"
    assert Path(cfg.output_dir).is_absolute()
    if "Every key is written out" in path.read_text(encoding="utf-8"):
        assert _keys(raw) == _keys(to_dict(NSTConfig())), f"{path.name} says every key is written out"


# ---------------------------------------------------------------- --set


def test_set_overrides_nested_keys_and_keeps_the_rest_of_the_section(tmp_path):
    path = minimal(tmp_path, "optimizer:\n  method: adam\n  iterations: 50\n")
    cfg = load_config(path, ["optimizer.iterations=7", "image.size=96"])
    assert cfg.optimizer.iterations == 7 and isinstance(cfg.optimizer.iterations, int)
    assert cfg.optimizer.method == "adam"  # merged, not replaced
    assert cfg.image.size == 96


def test_set_parses_yaml_values(tmp_path):
    cfg = load_config(minimal(tmp_path), [
        "snapshots=[1, 5]", "optimizer.iterations=5", "model.download=false", "image.size=[64, 48]",
        "loss.tv_weight=0.5", "loss.style_weight=1e4", "loss.content_weight=1.5e-3", "init.path=",
        "layers.style={conv1_1: 1, relu2_1: 0.5}", "model.weights=null",
    ])
    assert cfg.snapshots == [1, 5]
    assert cfg.model.download is False
    assert cfg.image.size == [64, 48]
    assert cfg.loss.tv_weight == 0.5
    assert cfg.loss.style_weight == 1e4 and isinstance(cfg.loss.style_weight, float)
    assert cfg.loss.content_weight == pytest.approx(1.5e-3)
    assert cfg.init.path is None and cfg.model.weights is None
    assert cfg.layers.style == {"conv1_1": 1.0, "relu2_1": 0.5}
    assert all(isinstance(v, float) for v in cfg.layers.style.values())  # int -> float


def test_scientific_notation_in_a_config_file_is_a_number(tmp_path):
    """PyYAML reads `1e4` as a string (YAML 1.1); NST weights are written that way, so they must load."""
    cfg = load_config(minimal(tmp_path, "loss:\n  style_weight: 1e4\n  tv_weight: 1E-2\n"))
    assert cfg.loss.style_weight == 1e4 and cfg.loss.tv_weight == 1e-2


@pytest.mark.parametrize("bad", ["optimizer.iterations", "=5", "no_equals_sign"])
def test_malformed_set_is_refused(tmp_path, bad):
    msg = error_of(load_config, minimal(tmp_path), [bad])
    assert "--set" in msg or "config key" in msg


# ---------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    path = cfg_file(tmp_path, "content: ../img/c.jpg\nstyle:\n  - path: s.jpg\n    weight: 2\n"
                    "output_dir: out\nmodel:\n  weights: w/vgg.h5\ninit:\n  method: file\n  path: ../i.png\n",
                    sub="cfgs")
    cfg = load_config(path)
    base = (tmp_path / "cfgs").resolve()
    assert cfg.content == str(base.parent / "img" / "c.jpg")
    assert cfg.style == [StyleImage(str(base / "s.jpg"), 2.0)]
    assert cfg.output_dir == str(base / "out")
    assert cfg.model.weights == str(base / "w" / "vgg.h5")
    assert cfg.init.path == str(base.parent / "i.png")


def test_set_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    path = cfg_file(tmp_path, f"content: {C}\nstyle: {S}\n", sub="cfgs")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = load_config(path, ["content=photo.jpg", "style=[a.jpg, b.jpg]", "output_dir=runs/x"])
    assert cfg.content == str(work.resolve() / "photo.jpg")
    assert [s.path for s in cfg.style] == [str(work.resolve() / "a.jpg"), str(work.resolve() / "b.jpg")]
    assert cfg.output_dir == str(work.resolve() / "runs" / "x")


def test_absolute_paths_stay(tmp_path):
    cfg = load_config(cfg_file(tmp_path, f"content: {C}\nstyle: {S}\n", sub="deep/er"))
    assert cfg.content == str(C) and cfg.style[0].path == str(S)


# ---------------------------------------------------------------- style forms


def test_style_as_one_string(tmp_path):
    cfg = load_config(cfg_file(tmp_path, f"content: {C}\nstyle: {S}\n"))
    assert cfg.style == [StyleImage(str(S), 1.0)]


def test_style_as_list_of_strings(tmp_path):
    cfg = load_config(cfg_file(tmp_path, f"content: {C}\nstyle: [{S}, a.jpg]\n"))
    assert cfg.style == [StyleImage(str(S), 1.0), StyleImage(str(tmp_path.resolve() / "a.jpg"), 1.0)]


def test_style_as_list_of_path_weight(tmp_path):
    cfg = load_config(cfg_file(tmp_path, f"content: {C}\nstyle:\n  - path: {S}\n    weight: 3\n"
                                         f"  - path: {C}\n  - {S}\n"))
    assert cfg.style == [StyleImage(str(S), 3.0), StyleImage(str(C), 1.0), StyleImage(str(S), 1.0)]


@pytest.mark.parametrize("text, needle", [
    ("style:\n  - path: a.jpg\n    wieght: 2\n", "did you mean 'style[0].weight'"),
    ("style:\n  - weight: 2\n", "style"),
    ("style: 5\n", "style"),
    ("style: []\n", "style"),
    ("style:\n  - path: a.jpg\n    weight: -1\n", "style[0].weight"),
    ("style:\n  - path: a.jpg\n    weight: 0\n", "sum to zero"),
])
def test_bad_style_forms(tmp_path, text, needle):
    msg = error_of(load_config, cfg_file(tmp_path, f"content: {C}\n{text}"))
    assert needle in msg


# ---------------------------------------------------------------- validation messages


@pytest.mark.parametrize("text, needle", [
    ("contnet: x.jpg\n", "did you mean 'content'"),
    ("optimizer:\n  iteration: 5\n", "did you mean 'optimizer.iterations'"),
    ("loss:\n  style_wieght: 5\n", "did you mean 'loss.style_weight'"),
    ("zzz: 1\n", "unknown config key 'zzz'"),
])
def test_unknown_key_did_you_mean(tmp_path, text, needle):
    assert needle in error_of(load_config, minimal(tmp_path, text))


def test_unknown_key_from_set_did_you_mean(tmp_path):
    msg = error_of(load_config, minimal(tmp_path), ["optimiser.iterations=3"])
    assert "optimiser" in msg and "did you mean 'optimizer'" in msg


@pytest.mark.parametrize("text, key", [
    ("optimizer:\n  iterations: ten\n", "optimizer.iterations"),
    ("optimizer:\n  iterations: 10.5\n", "optimizer.iterations"),
    ("seed: true\n", "seed"),
    ("loss:\n  style_weight: heavy\n", "loss.style_weight"),
    ("loss:\n  style_weight: .inf\n", "loss.style_weight"),
    ("model:\n  download: 1\n", "model.download"),
    ("image: 512\n", "image"),
    ("image:\n  size: big\n", "image.size"),
    ("snapshots: 5\n", "snapshots"),
    ("snapshots: [1, x]\n", "snapshots[1]"),
    ("layers:\n  style:\n    conv1_1: much\n", "layers.style.conv1_1"),
    ("model:\n  weights: 5\n", "model.weights"),
])
def test_wrong_type_names_the_key(tmp_path, text, key):
    msg = error_of(load_config, minimal(tmp_path, text))
    assert f"'{key}'" in msg


@pytest.mark.parametrize("setting, key, hint", [
    ("model.pooling=maxx", "model.pooling", "did you mean 'max'"),
    ("model.network=vgg91", "model.network", "did you mean 'vgg19'"),
    ("optimizer.method=lbgfs", "optimizer.method", "did you mean 'lbfgs'"),
    ("init.method=nosie", "init.method", "did you mean 'noise'"),
    ("color.preserve=lum", "color.preserve", ""),
    ("precision=float64", "precision", ""),
    ("optimizer.xla=maybe", "optimizer.xla", ""),
    ("loss.content_form=papers", "loss.content_form", "did you mean 'paper'"),
])
def test_choices_are_validated(tmp_path, setting, key, hint):
    msg = error_of(load_config, minimal(tmp_path), [setting])
    assert f"'{key}'" in msg and "must be one of" in msg and hint in msg


@pytest.mark.parametrize("setting, key", [
    ("optimizer.iterations=0", "optimizer.iterations"),
    ("loss.style_weight=-1", "loss.style_weight"),
    ("loss.tv_weight=-0.1", "loss.tv_weight"),
    ("layers.style={conv1_1: -0.2}", "layers.style.conv1_1"),
    ("image.size=8", "image.size"),
    ("image.size=[64, 48, 3]", "image.size"),
    ("image.style_scale=0", "image.style_scale"),
    ("snapshots=[0]", "snapshots"),
    ("snapshots=[0]", "snapshots"),
    ("optimizer.rounds=0", "optimizer.rounds"),
    ("optimizer.learning_rate=0", "optimizer.learning_rate"),
    ("init.noise_ratio=1.5", "init.noise_ratio"),
    ("init.method=file", "init.path"),
    ("seed=-1", "seed"),
    ("progress.every=0", "progress.every"),
    ("layers.style={}", "layers.style"),
])
def test_out_of_range_values_name_the_key(tmp_path, setting, key):
    assert f"'{key}'" in error_of(load_config, minimal(tmp_path), [setting])


def test_bad_yaml_says_where(tmp_path):
    msg = error_of(load_config, cfg_file(tmp_path, f"content: {C}\nstyle: [a.jpg\noptimizer: {{\n"))
    assert "not valid YAML" in msg and "line" in msg and "c.yaml" in msg


def test_yaml_that_is_not_a_mapping(tmp_path):
    assert "mapping" in error_of(load_config, cfg_file(tmp_path, "- a\n- b\n"))


def test_missing_config_file(tmp_path):
    assert "nope.yaml" in error_of(load_config, tmp_path / "nope.yaml")

"""doodle.config: nst's sections and loader with the doodle schema; shipped doodle configs write out every key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from doodle.config import DoodleConfig, defaults_yaml, load_doodle_config
from nst.config import read_yaml, to_dict
from nst.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DOODLE_CONFIGS = ["doodle_coastline.yaml", "doodle_portrait.yaml", "doodle_seed_original.yaml", "doodle_print.yaml"]
# name -> weight maps: their keys are data (layer names), not schema
WEIGHT_MAPS = {"layers.content", "layers.style", "doodle.patch_layers", "doodle.patch_gram_layers"}


def _key_paths(data: dict, prefix: str = "") -> set[str]:
    """Dotted keys down to sections, not into the name -> weight maps."""
    keys = set()
    for k, v in data.items():
        keys.add(prefix + k)
        if isinstance(v, dict) and prefix + k not in WEIGHT_MAPS:
            keys |= _key_paths(v, f"{prefix}{k}.")
    return keys


@pytest.mark.parametrize("name", DOODLE_CONFIGS)
def test_shipped_config_writes_out_every_key(name):
    written = _key_paths(read_yaml(CONFIGS / name))
    schema = _key_paths(to_dict(DoodleConfig()))
    assert schema - written == set(), f"{name} leaves keys to hidden defaults"


@pytest.mark.parametrize("name", DOODLE_CONFIGS)
def test_shipped_config_inputs_exist(name):
    cfg = load_doodle_config(CONFIGS / name)
    assert Path(cfg.style).is_file()
    assert cfg.content is None or Path(cfg.content).is_file()
    for key in ("style_map", "target_map", "content_map"):
        value = getattr(cfg.doodle, key)
        assert value is None or Path(value).is_file(), key
    assert Path(cfg.output_dir).is_relative_to(CONFIGS.parent / "runs")


def test_seed_original_is_the_keras_examples_settings():
    cfg = load_doodle_config(CONFIGS / "doodle_seed_original.yaml")
    d = cfg.doodle
    assert (d.labels.mode, d.labels.count, d.method, d.gram_form, d.mask_smoothing) == ("kmeans", 4, "gram",
                                                                                         "original", True)
    assert (cfg.loss.tv_weight, d.tv_form, cfg.loss.style_weight) == (50.0, "original", 1.0)
    assert (cfg.optimizer.rounds, cfg.optimizer.max_evals_per_round, d.phases) == (20, 20, 1)
    assert cfg.layers.style == {f"conv{i}_1": 0.2 for i in range(1, 6)}
    assert cfg.init.method == "random" and cfg.model.pooling == "max"


def test_coastline_uses_the_defaults_of_the_engine():
    """The coastline config is the documented default run: the same values as the dataclasses."""
    cfg = to_dict(load_doodle_config(CONFIGS / "doodle_coastline.yaml"))
    defaults = to_dict(DoodleConfig())
    for section in ("image", "layers", "loss", "init", "optimizer", "model"):
        assert cfg[section] == defaults[section], section
    assert {k: v for k, v in cfg["doodle"].items() if k not in ("target_map",)} == \
           {k: v for k, v in defaults["doodle"].items() if k not in ("target_map",)}


def test_defaults_print_every_section():
    data = yaml.safe_load(defaults_yaml())
    assert data["doodle"]["method"] == "patch" and data["doodle"]["phases"] == 3
    assert data["optimizer"]["iterations"] == 140


def test_override_of_one_key_keeps_the_doodle_defaults_of_its_section():
    cfg = load_doodle_config(None, ["style=a.jpg", "loss.tv_weight=1", "optimizer.rounds=3"])
    assert cfg.loss.tv_weight == 1.0 and cfg.loss.style_weight == DoodleConfig().loss.style_weight
    assert cfg.optimizer.rounds == 3 and cfg.optimizer.iterations == DoodleConfig().optimizer.iterations


def test_map_paths_resolve_against_the_config_folder(tmp_path):
    sub = tmp_path / "deep"
    sub.mkdir()
    path = sub / "c.yaml"
    path.write_text("style: s.jpg\ndoodle:\n  target_map: maps/t.png\n", encoding="utf-8")
    cfg = load_doodle_config(path)
    assert cfg.style == str(sub / "s.jpg") and cfg.doodle.target_map == str(sub / "maps" / "t.png")


@pytest.mark.parametrize("sets, needle", [
    ([], "'style' is required"),
    (["style=a.jpg", "doodle.methd=patch"], "did you mean 'doodle.method'"),
    (["style=a.jpg", "doodle.method=pach"], "did you mean 'patch'"),
    (["style=a.jpg", "doodle.labels.mode=kmeans"], "doodle.labels.count"),
    (["style=a.jpg", "doodle.content_map=c.png"], "needs its photo"),
    (["style=a.jpg", "content=c.jpg", "doodle.content_map=c.png", "doodle.target_map=t.png"], "both set"),
    (["style=a.jpg", "doodle.patch_size=4"], "odd"),
    (["style=a.jpg", "doodle.phases=0"], "doodle.phases"),
    (["style=a.jpg", "doodle.phases=5", "optimizer.iterations=3"], "every phase needs an iteration"),
    (["style=a.jpg", "init.method=content"], "no content photo"),
    (["style=a.jpg", "doodle.semantic_weight=-1"], "semantic_weight"),
])
def test_bad_values_are_one_line_user_errors(sets, needle):
    with pytest.raises(UserError) as err:
        load_doodle_config(None, sets)
    assert needle in str(err.value) and "\n" not in str(err.value)

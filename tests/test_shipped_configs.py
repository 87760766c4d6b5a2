"""Shipped experiment configs: they load, and every key of the schema is written out (no hidden defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nst.config import NSTConfig, load_config, read_yaml, to_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NST_CONFIGS = ["oil_landscape.yaml", "quick.yaml", "seed_original.yaml", "fast.yaml", "print_4k.yaml"]


def _key_paths(data: dict, prefix: str = "") -> set[str]:
    """Dotted keys down to sections; the inside of name->weight maps (layers.*) is data, not schema."""
    keys = set()
    for k, v in data.items():
        keys.add(prefix + k)
        if isinstance(v, dict) and not (prefix + k).startswith("layers."):
            keys |= _key_paths(v, f"{prefix}{k}.")
    return keys


@pytest.mark.parametrize("name", NST_CONFIGS)
def test_nst_config_writes_out_every_key(name):
    written = _key_paths(read_yaml(CONFIGS / name))
    schema = _key_paths(to_dict(NSTConfig()))
    assert schema - written == set(), f"{name} leaves keys to hidden defaults"


@pytest.mark.parametrize("name", NST_CONFIGS)
def test_nst_config_inputs_exist(name):
    cfg = load_config(CONFIGS / name)
    assert Path(cfg.content).is_file()
    assert all(Path(s.path).is_file() for s in cfg.style)
    assert Path(cfg.output_dir).is_relative_to(CONFIGS.parent / "runs")


def test_fig_3_2_settings():
    cfg = load_config(CONFIGS / "oil_landscape.yaml")
    assert cfg.optimizer.iterations == 1000 and cfg.snapshots == [50, 300, 1000]
    assert cfg.model.pooling == "avg" and cfg.optimizer.method == "lbfgs"


def test_seed_original_is_the_original_codes_settings():
    cfg = load_config(CONFIGS / "seed_original.yaml")
    assert cfg.image.size == [400, 300] and cfg.init.noise_ratio == 0.6
    assert (cfg.loss.content_weight, cfg.loss.style_weight) == (10.0, 40.0)
    assert cfg.optimizer.method == "adam" and cfg.optimizer.learning_rate == 2.0
    assert cfg.layers.style == {f"conv{i}_1": 0.2 for i in range(1, 6)}

"""The task table (nst.kinds): every kind found by name, by its config file's keys and by its loaded config;
the applications (studio, sweeps, figures) use it; and the layering it makes possible: nst names no other kind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nst.errors import UserError
from nst.kinds import kind, kind_of_config, kind_of_file, kind_of_raw, kinds

REPO = Path(__file__).resolve().parents[1]


def test_the_table_has_style_transfer_and_doodle_with_what_callers_need():
    table = kinds()
    assert {"nst", "doodle"} <= set(table)
    for name, k in table.items():
        assert k.name == name and k.command.startswith("python -m ")
        cfg = k.schema()  # every default is visible in the schema
        assert all(key.split(".")[0].replace("[]", "") in {f for f in type(cfg).__dataclass_fields__}
                   for key in k.path_keys)
        assert callable(k.execute) and callable(k.load)
    assert kind("doodle").marker == "doodle" and kind("nst").marker is None


def test_a_config_file_says_its_kind_by_its_sections():
    assert kind_of_file(REPO / "configs" / "oil_landscape.yaml").name == "nst"
    assert kind_of_file(REPO / "configs" / "doodle_coastline.yaml").name == "doodle"
    assert kind_of_raw({"content": "a.jpg"}).name == "nst"
    cfg = kind("doodle").load(REPO / "configs" / "doodle_coastline.yaml", ["image.size=64"])
    assert kind_of_config(cfg).name == "doodle"
    assert kind_of_config(kind("nst").load(REPO / "configs" / "quick.yaml", [])).name == "nst"


def test_an_unknown_kind_is_one_clear_error():
    with pytest.raises(UserError, match="unknown run kind 'dodle'; use .*doodle.*nst"):
        kind("dodle")


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def test_nst_imports_no_other_kind_or_application():
    offenders = [(str(p.relative_to(REPO)), m) for p in (REPO / "nst").rglob("*.py") for m in _imports(p)
                 if m.split(".")[0] in ("doodle", "studio", "experiments")]
    assert offenders == []


def test_nothing_imports_a_main_module_or_a_private_name_across_packages():
    bad = []
    for p in [*REPO.glob("nst/**/*.py"), *REPO.glob("doodle/*.py"), *REPO.glob("studio/*.py"),
              *REPO.glob("experiments/**/*.py")]:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                if node.module.endswith("__main__"):
                    bad.append((str(p.relative_to(REPO)), node.module))
                if top != p.relative_to(REPO).parts[0]:
                    bad += [(str(p.relative_to(REPO)), f"{node.module}.{a.name}") for a in node.names
                            if a.name.startswith("_")]
    assert bad == []


def test_tiles_and_plan_import_nothing_that_imports_them():
    for low in ("nst/tiles.py", "nst/plan.py", "doodle/tiles.py", "doodle/recipe.py", "nst/recipe.py"):
        mods = _imports(REPO / low)
        assert not {"nst.engine", "nst.transfer", "doodle.engine", "nst.run", "doodle.run"} & set(mods), low

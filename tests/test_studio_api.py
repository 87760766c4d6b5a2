"""The studio's HTTP API through Starlette's test client: the generated panel, presets, uploads and their
checks, path confinement, one-line errors, tokens, a real 64 px run with live progress, history, zip, compare,
cancel (queued and running), and a server stop that cancels cleanly.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

pytest.importorskip("starlette", reason="the studio extra is not installed: pip install -e '.[studio]'")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx (the studio extra)")
import warnings  # noqa: E402

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 at import; httpx is what it tests with here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from nst.config import NSTConfig, load_config, to_dict  # noqa: E402
from studio import app as studio_app  # noqa: E402
from studio import files as studio_files  # noqa: E402
from studio.app import create_app  # noqa: E402
from studio.schema import build_config, fields, panel_values  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

BASE = "http://127.0.0.1:8765"  # the page's origin: the studio answers to loopback names only (studio.guard)
FAST = {"image.size": "64", "precision": "float32", "optimizer.xla": False, "progress.quiet": True}


def one_line_error(resp, status: int, *needles: str) -> str:
    assert resp.status_code == status, resp.text
    msg = resp.json()["error"]
    assert msg.startswith("error: ") and "\n" not in msg and "Traceback" not in msg, msg
    for n in needles:
        assert n.lower() in msg.lower(), msg
    return msg


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "studio"), base_url=BASE) as c:
        yield c


def inputs(content_path, style_path, **extra):
    return {"content": str(content_path), "style": [{"path": str(style_path), "weight": 1.0}], **FAST, **extra}


def wait_for(client, run_id, statuses, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        row = client.get(f"/api/runs/{run_id}").json()
        if row["status"] in statuses:
            return row
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never reached {statuses}: {row}")


def png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- the panel is the dataclasses


def test_panel_fields_are_the_dataclass_leaves_with_their_defaults(client):
    got = {f["key"]: f for f in client.get("/api/schema/nst").json()["fields"]}
    want = panel_values("nst", to_dict(NSTConfig()))
    assert set(got) == set(want) and "content" not in got and "style" not in got
    for key, value in want.items():
        assert got[key]["default"] == value, key
    assert got["optimizer.method"]["choices"] == ["lbfgs", "adam"]
    assert got["optimizer.bounds"]["widget"] == "bool" and got["optimizer.iterations"]["widget"] == "int"
    assert "alpha" in got["loss.content_weight"]["help"]  # the source comment is the help text
    doodle = {f["key"] for f in client.get("/api/schema/doodle").json()["fields"]}
    assert {"doodle.method", "doodle.phases"} <= doodle and "doodle.target_map" not in doodle
    one_line_error(client.get("/api/schema/video"), 400, "unknown run kind")


def test_presets_are_the_shipped_configs_of_each_kind(client):
    nst = {p["name"]: p for p in client.get("/api/presets/nst").json()}
    assert {"quick", "oil_landscape", "seed_original"} <= set(nst) and not any("doodle" in n for n in nst)
    assert nst["quick"]["values"]["image.size"] == 384
    assert Path(nst["quick"]["inputs"]["content"]).is_file()
    doodle = {p["name"] for p in client.get("/api/presets/doodle").json()}
    assert "doodle_coastline" in doodle and "quick" not in doodle


def test_form_values_go_through_the_cli_checks(tmp_path, content_path, style_path):
    cfg = build_config("nst", inputs(content_path, style_path, **{"loss.style_weight": "1e4"}), tmp_path / "o")
    assert cfg.image.size == 64 and cfg.loss.style_weight == 1e4 and cfg.optimizer.xla is False
    with pytest.raises(Exception, match="did you mean|unknown config key"):
        build_config("nst", {"optimiser.iterations": 3}, tmp_path)


# ---------------------------------------------------------------- safety


def test_file_endpoints_are_confined_to_the_studio_folders(client, tmp_path, data_dir):
    root = client.app.state.studio.folders.root
    assert client.get("/api/file", params={"path": str(data_dir / "style" / "starry_night.jpg")}).status_code == 200
    for bad in ("/etc/passwd", str(root / ".." / ".." / "etc" / "passwd"), "../../../../etc/passwd",
                str(data_dir / ".." / ".." / "etc" / "hostname")):
        one_line_error(client.get("/api/file", params={"path": bad}), 403, "outside the studio")
    os.symlink("/etc/passwd", root / "uploads" / "link.png")  # a symlink inside does not lead out
    one_line_error(client.get("/api/file", params={"path": str(root / "uploads" / "link.png")}), 403)
    one_line_error(client.get("/api/runs/..%2F..%2Fetc/files/passwd"), 404)
    one_line_error(client.get("/api/runs/x/files/..%2F..%2Fstudio.json"), 404)
    one_line_error(client.get("/api/palette", params={"path": "/etc/passwd"}), 403)
    one_line_error(client.post("/api/runs", json={"kind": "nst", "values": inputs("/etc/hostname", data_dir / "style" / "starry_night.jpg")}), 403, "outside")


def test_uploads_are_checked_like_cli_inputs(client, monkeypatch):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, 15:] = 200
    r = client.post("/api/upload", params={"name": "my photo.png"}, content=png(rgb))
    assert r.status_code == 200, r.text
    saved = Path(r.json()["path"])
    assert saved.name == "my-photo.png" and np.array_equal(np.asarray(Image.open(saved)), rgb)
    assert str(saved) in client.get("/api/images").json()["uploads"]
    uploads = saved.parent
    before = set(uploads.iterdir())
    one_line_error(client.post("/api/upload", params={"name": "cut.png"}, content=png(rgb)[:60]), 400,
                   "truncated or corrupt")
    one_line_error(client.post("/api/upload", params={"name": "notes.txt"}, content=b"hello"), 400, "not an image")
    one_line_error(client.post("/api/upload", params={"name": "text.png"}, content=b"hello"), 400, "not an image")
    monkeypatch.setattr(studio_files, "MAX_UPLOAD_PIXELS", 100)  # a decompression-bomb-sized header, scaled down
    one_line_error(client.post("/api/upload", params={"name": "big.png"}, content=png(rgb)), 400, "over the limit")
    monkeypatch.setattr(studio_app, "MAX_UPLOAD_BYTES", 50)
    one_line_error(client.post("/api/upload", params={"name": "huge.png"}, content=png(rgb)), 413, "over the limit")
    assert set(uploads.iterdir()) == before  # nothing refused is kept


def test_bad_settings_are_one_line_errors(client, content_path, style_path):
    base = inputs(content_path, style_path)
    one_line_error(client.post("/api/runs", json={"kind": "nst", "values": {**base, "image.size": "abc"}}), 400,
                   "image.size")
    one_line_error(client.post("/api/runs", json={"kind": "nst", "values": {**base, "optimizer.iterations": "0"}}),
                   400, "optimizer.iterations")
    one_line_error(client.post("/api/runs", json={"kind": "nst", "values": {**base, "loss.styleweight": "1"}}), 400,
                   "unknown config key")
    one_line_error(client.post("/api/runs", json={"kind": "nst", "values": {**base, "content": None}}), 400,
                   "content")
    one_line_error(client.post("/api/runs", content=b"{not json", headers={"content-type": "application/json"}),
                   400, "not JSON")
    one_line_error(client.post("/api/runs/nope/cancel"), 400, "not queued or running")
    assert client.get("/api/runs").json() == []  # nothing half-made


def test_a_bug_is_one_line_not_a_stack_trace(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(studio_app.history, "list_runs", boom)
    with TestClient(create_app(tmp_path / "s"), base_url=BASE, raise_server_exceptions=False) as c:
        one_line_error(c.get("/api/runs"), 500, "internal error")


def test_token_guards_every_route(tmp_path):
    with TestClient(create_app(tmp_path / "s", token="sesame"), base_url=BASE) as c:
        one_line_error(c.get("/api/runs"), 403, "token")
        one_line_error(c.get("/"), 403, "token")
        assert c.get("/api/runs", headers={"X-Studio-Token": "sesame"}).status_code == 200
        assert c.get("/", params={"token": "sesame"}).status_code == 200  # sets the cookie the page then uses
        assert c.get("/api/runs").status_code == 200


def test_command_line_refuses_open_host_without_token(capsys):
    from nst.cli import run_main
    from studio.__main__ import main

    assert run_main(main, ["--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--token" in err[0]
    assert run_main(main, ["--port", "70000"]) == 2


# ---------------------------------------------------------------- runs


@pytest.mark.slow
def test_run_progress_history_zip_compare_and_yaml(client, content_path, style_path):
    values = inputs(content_path, style_path, **{"optimizer.iterations": "8", "snapshots": "[4]"})
    job = client.post("/api/runs", json={"kind": "nst", "values": values}).json()
    assert job["status"] in ("queued", "running")
    seen = set()
    while (row := client.get(f"/api/runs/{job['id']}").json())["status"] in ("queued", "running"):
        cur = client.get("/api/state").json()["current"]
        if cur and cur["preview_version"]:
            seen.add(cur["iteration"])
        time.sleep(0.05)
    assert row["status"] == "finished" and row["has_result"] and row["snapshots"] == ["iter_0004.png"]
    assert seen, "no live progress was seen"
    preview = Image.open(io.BytesIO(client.get(f"/api/runs/{job['id']}/preview.png").content))
    result = Image.open(io.BytesIO(client.get(f"/api/runs/{job['id']}/files/result.png").content))
    assert preview.size == result.size and max(result.size) == 64
    assert row["losses"]["iteration"][-1] == 8 and row["losses"]["style"][-1] < row["losses"]["style"][0]
    assert [r["id"] for r in client.get("/api/runs").json()] == [job["id"]]
    names = zipfile.ZipFile(io.BytesIO(client.get(f"/api/runs/{job['id']}/zip").content)).namelist()
    assert {f"{job['id']}/{n}" for n in ("result.png", "losses.csv", "run.json", "config.yaml")} <= set(names)
    cmp_png = client.get("/api/compare.png", params={"ids": f"{job['id']},{job['id']}"})
    assert cmp_png.status_code == 200 and Image.open(io.BytesIO(cmp_png.content)).size[0] > 300
    # the saved YAML is the run's config: every key, and it loads back to the same settings
    folder = client.app.state.studio.folders.run_dir(job["id"])
    text = client.post("/api/config", json={"kind": "nst", "values": values}).text
    saved = yaml.safe_load(text)
    assert set(saved) == set(to_dict(NSTConfig()))
    ran = load_config(folder / "config.yaml")
    assert {**to_dict(ran), "output_dir": None} == \
        {**to_dict(build_config("nst", values, Path("x"))), "output_dir": None}


@pytest.mark.slow
def test_cancel_queued_and_running_and_stop_cancels(tmp_path, content_path, style_path):
    values = inputs(content_path, style_path, **{"optimizer.iterations": "400"})
    with TestClient(create_app(tmp_path / "studio"), base_url=BASE) as c:
        first = c.post("/api/runs", json={"kind": "nst", "values": values}).json()
        second = c.post("/api/runs", json={"kind": "nst", "values": values}).json()
        third = c.post("/api/runs", json={"kind": "nst", "values": values}).json()
        assert [j["id"] for j in c.get("/api/state").json()["queue"]][-2:] == [second["id"], third["id"]]
        assert c.post(f"/api/runs/{second['id']}/cancel").json()["status"] == "cancelled"
        end = time.time() + 120
        while (c.get("/api/state").json()["current"] or {}).get("iteration", 0) < 2 and time.time() < end:
            time.sleep(0.1)
        c.post(f"/api/runs/{first['id']}/cancel")
        row = wait_for(c, first["id"], ("cancelled",))
        assert not row["has_result"] and 2 <= row["iterations_done"] < 400
        # the third starts; stopping the server cancels it and records its folder as the CLI would
        end = time.time() + 120
        while (c.get("/api/state").json()["current"] or {}).get("iteration", 0) < 1 and time.time() < end:
            time.sleep(0.1)
        runs = c.app.state.studio.folders.runs
    import json

    third_run = json.loads((runs / third["id"] / "run.json").read_text())
    assert third_run["status"] == "cancelled" and not (runs / third["id"] / "result.png").exists()
    assert json.loads((runs / second["id"] / "studio.json").read_text())["status"] == "cancelled"
    assert not (runs / second["id"] / "run.json").exists()  # never started: nothing pretends it ran


# ---------------------------------------------------------------- make map (automatic semantic maps)


def scene(flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 64x96 image of three known regions (blue stripes on top, green noise bottom-left, brown dots
    bottom-right; ``flip``: upside down) and its (H, W) truth labels 0, 1, 2."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:96]
    truth = np.where(yy < 32, 0, np.where(xx < 48, 1, 2))
    texture = {0: 8 * np.sin(xx * 1.3), 1: rng.normal(0, 5, (64, 96)), 2: 10.0 * ((yy % 6 < 2) & (xx % 6 < 2))}
    colours = {0: (90, 150, 230), 1: (40, 160, 60), 2: (140, 90, 40)}
    image = np.zeros((64, 96, 3))
    for k in range(3):
        image[truth == k] = (np.asarray(colours[k], float) + texture[k][..., None])[truth == k]
    image = np.clip(image, 0, 255).astype(np.uint8)
    return (image[::-1].copy(), truth[::-1].copy()) if flip else (image, truth)


def upload(client, name: str, rgb) -> str:
    r = client.post("/api/upload", params={"name": name}, content=png(rgb))
    assert r.status_code == 200, r.text
    return r.json()["path"]


def map_labels(rgb: np.ndarray, palette: list[str]) -> np.ndarray:
    """(H, W) index into ``palette`` (hex colours) of each pixel; every pixel must be one of them."""
    codes = [tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) for h in palette]
    hits = np.stack([(rgb == c).all(-1) for c in codes], -1)
    assert hits.any(-1).all(), "the map has colours outside its palette"
    return hits.argmax(-1)


@pytest.mark.slow
def test_make_map_writes_a_new_map_of_the_regions_and_matches_the_content_to_it(client):
    from doodle.automatch import matched_iou

    image, truth = scene()
    path = upload(client, "scene.png", image)
    uploads = Path(path).parent
    hand = np.zeros((64, 96, 3), np.uint8)  # a map the studio did not make: it must survive
    hand[:, 48:] = 255
    (uploads / "scene_sem.png").write_bytes(png(hand))
    r = client.post("/api/automap", json={"image": path, "labels": 3, "seed": 0})
    assert r.status_code == 200, r.text
    made = r.json()
    assert made["path"] == str(uploads / "scene-2_sem.png") and made["map"] == made["path"]
    assert np.array_equal(np.asarray(Image.open(uploads / "scene_sem.png")), hand)
    rgb = np.asarray(Image.open(made["path"]).convert("RGB"))
    assert rgb.shape == (64, 96, 3) and len(made["palette"]) == 3
    labels = map_labels(rgb, made["palette"])
    iou, _ = matched_iou(labels, truth)
    assert iou.min() > 0.85, f"the map does not follow the three regions: IoU {iou}"
    assert np.allclose(made["shares"], np.bincount(labels.ravel(), minlength=3) / labels.size, atol=1e-4)
    assert client.get(made["url"]).content == Path(made["path"]).read_bytes()
    assert made["path"] in client.get("/api/images").json()["uploads"]
    assert client.get("/api/palette", params={"path": made["path"]}).json()["palette"] == made["palette"]
    assert any("3 regions, given" in n for n in made["notes"])

    # the content side: an upside-down photo, its map in the style map's colours, region to region
    content, content_truth = scene(flip=True)
    content_path = upload(client, "upside.png", content)
    r = client.post("/api/automap", json={"image": content_path, "style": path, "style_map": made["path"],
                                          "seed": "0", "labels": ""})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert Path(pair["path"]).name == "upside_sem.png" and "style_map" not in pair  # the given map is kept
    got = np.asarray(Image.open(pair["path"]).convert("RGB"))
    assert set(pair["palette"]) <= set(made["palette"])
    for k in range(3):  # each truth region is painted the colour the style map gave the same kind of region
        want = rgb[truth == k].reshape(-1, 3)
        colour = np.median(got[content_truth == k].reshape(-1, 3), axis=0)
        assert (np.median(want, axis=0) == colour).all(), f"region {k}: {colour} vs the style's {want[0]}"


def test_make_map_bad_input_is_one_line_and_writes_nothing(client, data_dir):
    root = client.app.state.studio.folders.root
    image, _ = scene()
    path = upload(client, "scene.png", image)
    flat = upload(client, "flat.png", np.full((40, 40, 3), 128, np.uint8))
    two = upload(client, "two.png", np.repeat([[[0, 0, 0]] * 20 + [[255, 255, 255]] * 20], 40, axis=0))
    tiny = upload(client, "tiny.png", np.eye(8, dtype=np.uint8)[..., None].repeat(3, -1) * 255)
    (root / "notes.png").write_bytes(b"not a picture")
    before = sorted((root / "uploads").iterdir())
    post = lambda **kw: client.post("/api/automap", json=kw)  # noqa: E731
    for bad in ("abc", 1, 13, 2.5, True, "-3"):
        one_line_error(post(image=path, labels=bad), 400, "labels must be a whole number between 2 and 12")
    one_line_error(post(image=path, seed=-1), 400, "seed")
    one_line_error(post(image=flat), 400, "one colour")
    one_line_error(post(image=two, labels=3), 400, "only 2 distinct colours")
    one_line_error(post(image=tiny), 400, "too small")
    one_line_error(post(image=str(root / "uploads" / "missing.png")), 404, "not found")
    one_line_error(post(image="/etc/hostname"), 403, "outside the studio")
    one_line_error(post(image=path, style="../../etc/passwd"), 403, "outside the studio")
    one_line_error(post(image=str(root / "notes.png")), 400, "not an image")
    one_line_error(post(), 400, "no path given")
    one_line_error(post(image=path, colours=3), 400, "unknown automap field")
    one_line_error(post(image=path, style_map=str(data_dir / "doodle" / "Monet_sem.png")), 400, "style image")
    one_line_error(post(image=path, style=str(data_dir / "doodle" / "Monet.jpg"),
                        style_map=str(data_dir / "doodle" / "Mia_sem.png")), 400, "aspect ratio")
    one_line_error(client.post("/api/automap", content=b"[1]", headers={"content-type": "application/json"}), 400,
                   "JSON object")
    assert sorted((root / "uploads").iterdir()) == before  # nothing refused is written


def test_preview_of_a_print_is_shrunk_to_fit_and_small_images_are_kept():
    from studio.jobs import PREVIEW_MAX_SIDE, png_bytes

    big = np.zeros((1536, 2048, 3), np.float32)
    big[:, 1024:] = 255.0  # right half white: the shrunk preview keeps the layout
    shown = np.asarray(Image.open(io.BytesIO(png_bytes(big, PREVIEW_MAX_SIDE))))
    assert shown.shape == (768, 1024, 3)
    assert shown[:, :500].max() == 0 and shown[:, 524:].min() == 255
    small = np.full((48, 64, 3), 7.0, np.float32)
    assert np.asarray(Image.open(io.BytesIO(png_bytes(small, PREVIEW_MAX_SIDE)))).shape == (48, 64, 3)

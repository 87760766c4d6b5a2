"""The studio against other web pages and hostile requests, through Starlette's test client (issue 18).

Other pages in the same browser: a cross-origin state-changing request (text/plain CSRF, a form, an upload,
a cancel) is refused with 403; a foreign ``Host`` (DNS rebinding) with 400; cross-site subresource loads of
the API are refused; every response says it may not be framed or sniffed. Every path a posted config
names (``model.weights``, ``init.path``, maps) is confined as ``/api/file`` confines; symlinks out of the
studio's folders are refused by every route and left out of the zip; a token never reaches ``run.json``.
And the smaller cases: over-long paths, broken history entries, nested bodies, odd kinds, string booleans,
the upload's own name in its errors, a bounded queue, HTML in labels, names and statuses.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the studio extra is not installed: pip install -e '.[studio]'")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx (the studio extra)")
import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from studio import jobs as studio_jobs  # noqa: E402
from studio.app import create_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

BASE = "http://127.0.0.1:8765"  # where the page is served from: its origin
FAST = {"image.size": "32", "precision": "float32", "optimizer.xla": False, "progress.quiet": True}
EVIL = "http://evil.example"
REPO = Path(__file__).resolve().parents[1]


def one_line_error(resp, status: int, *needles: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    msg = resp.json()["error"]
    assert msg.startswith("error: ") and "\n" not in msg and "Traceback" not in msg, msg
    for n in needles:
        assert n.lower() in msg.lower(), msg
    return msg


def png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "studio"), base_url=BASE) as c:
        yield c


@pytest.fixture
def idle_worker(monkeypatch):
    """The worker thread holds each job until it is cancelled: queue tests without the engine."""

    def hold(self, job):
        while not job.control.cancelled and not self.stopping:
            threading.Event().wait(0.02)
        job.status, job.message = "cancelled", "held by the test"
        job.write_meta()

    monkeypatch.setattr(studio_jobs.Manager, "_run", hold)


def values(content_path, style_path, **extra):
    return {"content": str(content_path), "style": [{"path": str(style_path), "weight": 1.0}], **FAST, **extra}


def run_folders(client) -> list[str]:
    return sorted(p.name for p in client.app.state.studio.folders.runs.iterdir())


# ---------------------------------------------------------------- 1. other web pages


def test_cross_origin_posts_are_refused_and_change_nothing(client, content_path, style_path, idle_worker):
    body = json.dumps({"kind": "nst", "values": values(content_path, style_path)})
    uploads = client.app.state.studio.folders.uploads
    # the CSRF of the issue: a simple (no preflight) text/plain POST from another site
    for headers in ({"Origin": EVIL, "Content-Type": "text/plain"},
                    {"Origin": "null", "Content-Type": "text/plain"},  # a sandboxed frame or a file:// page
                    {"Origin": "http://127.0.0.1:3000"},  # another port of this machine: another origin
                    {"Origin": "http://localhost:8765"},  # another name for it: another origin too
                    {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
                    {"Sec-Fetch-Site": "same-site"}):
        one_line_error(client.post("/api/runs", content=body, headers=headers), 403, "cross-origin")
        one_line_error(client.post("/api/upload", params={"name": "x.png"}, content=png(np.zeros((8, 8, 3))),
                                   headers=headers), 403, "cross-origin")
        one_line_error(client.post("/api/automap", json={"image": "x"}, headers=headers), 403)
        one_line_error(client.post("/api/config", content=body, headers=headers), 403)
    assert run_folders(client) == [] and list(uploads.iterdir()) == []
    # the page itself: same origin (what Chromium sends), or a tool that sends neither header (curl)
    ok = client.post("/api/runs", content=body, headers={"Origin": BASE, "Sec-Fetch-Site": "same-origin",
                                                         "Content-Type": "application/json"})
    assert ok.status_code == 200, ok.text
    run_id = ok.json()["id"]
    one_line_error(client.post(f"/api/runs/{run_id}/cancel", headers={"Origin": EVIL}), 403, "cross-origin")
    assert client.get(f"/api/runs/{run_id}").json()["status"] in ("queued", "running")
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200  # no Origin, no Sec-Fetch-Site: curl


def test_foreign_host_is_refused(client):
    """DNS rebinding: evil.example resolves to 127.0.0.1, and the page reads the answers. Its Host says so."""
    root = client.app.state.studio.folders.root
    (root / "uploads" / "a.png").write_bytes(png(np.zeros((4, 4, 3))))
    for host in ("evil.example:8765", "evil.example", "127.0.0.1.nip.io:8765", "127.0.0.1:9999", "", "[::1"):
        for url in ("/", "/api/runs", f"/api/file?path={root / 'uploads' / 'a.png'}", "/static/app.js"):
            one_line_error(client.get(url, headers={"Host": host}), 400, "host")
    for host in ("127.0.0.1:8765", "localhost:8765", "LOCALHOST:8765", "[::1]:8765"):
        assert client.get("/api/runs", headers={"Host": host}).status_code == 200, host


def test_cross_site_subresources_are_refused_but_links_to_the_page_work(client, data_dir):
    """An <img src> or <script src> of the API on another page: the browser says cross-site; refused."""
    path = str(data_dir / "style" / "starry_night.jpg")
    for site in ("cross-site", "same-site"):
        one_line_error(client.get("/api/file", params={"path": path},
                                  headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"}), 403)
        one_line_error(client.get("/api/runs", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "cors"}), 403)
    assert client.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}).status_code == 200
    assert client.get("/api/file", params={"path": path}, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_every_response_forbids_framing_and_sniffing(client):
    for resp in (client.get("/"), client.get("/api/runs"), client.get("/static/app.js"), client.get("/nope"),
                 client.get("/api/file", params={"path": "/etc/passwd"}), client.get("/", headers={"Host": "x"}),
                 client.post("/api/runs", content=b"{}", headers={"Origin": EVIL})):
        h = resp.headers
        assert h["x-frame-options"] == "DENY", resp.url
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert "script-src 'self'" in h["content-security-policy"]  # no inline script: an injected one is inert
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
        assert h["cross-origin-resource-policy"] == "same-origin"


def test_token_still_guards_and_does_not_replace_the_origin_check(tmp_path):
    with TestClient(create_app(tmp_path / "s", token="sesame"), base_url=BASE) as c:
        one_line_error(c.get("/api/runs"), 403, "token")
        assert c.get("/", params={"token": "sesame"}).status_code == 200  # cookie for the page
        one_line_error(c.post("/api/runs", json={}, headers={"Origin": EVIL}), 403, "cross-origin")


# ---------------------------------------------------------------- 2. every path of a posted config is confined


@pytest.mark.parametrize("key, value", [
    ("model.weights", "/etc/passwd"),
    ("model.weights", "/etc/no-such-file"),  # the same answer: no oracle of what exists outside
    ("init.path", "/etc/hostname"),
    ("model.weights", "../../../../../etc/passwd"),
])
def test_every_path_in_a_posted_config_is_confined(client, content_path, style_path, key, value):
    extra = {key: value, **({"init.method": "file"} if key == "init.path" else {})}
    for route in ("/api/runs", "/api/config"):
        msg = one_line_error(client.post(route, json={"kind": "nst", "values": values(content_path, style_path,
                                                                                      **extra)}), 403, "outside")
        assert "md5" not in msg.lower() and "sha" not in msg.lower() and "not found" not in msg
    assert run_folders(client) == []


def test_doodle_map_paths_are_confined(client, data_dir):
    v = {"style": str(data_dir / "doodle" / "Monet.jpg"), "doodle.style_map": "/etc/passwd",
         "doodle.target_map": str(data_dir / "doodle" / "Monet_sem.png"), **FAST}
    one_line_error(client.post("/api/runs", json={"kind": "doodle", "values": v}), 403, "outside")
    v["doodle.style_map"] = str(data_dir / "doodle" / "Monet_sem.png")
    v["doodle.target_map"] = "/etc/passwd"
    one_line_error(client.post("/api/runs", json={"kind": "doodle", "values": v}), 403, "outside")
    v["doodle.target_map"] = str(data_dir / "doodle" / "Monet_sem.png")
    v["model.weights"] = "/etc/passwd"
    one_line_error(client.post("/api/runs", json={"kind": "doodle", "values": v}), 403, "outside")


# ---------------------------------------------------------------- 3. symlinks out, one confinement everywhere


def test_palette_refuses_a_paired_map_that_links_out(client, tmp_path):
    uploads = client.app.state.studio.folders.uploads
    outside = tmp_path / "secret_sem.png"
    outside.write_bytes(png(np.repeat([[[255, 0, 0]] * 8 + [[0, 0, 255]] * 8], 16, axis=0)))
    (uploads / "photo.png").write_bytes(png(np.zeros((16, 16, 3))))
    os.symlink(outside, uploads / "photo_sem.png")
    one_line_error(client.get("/api/palette", params={"path": str(uploads / "photo.png")}), 403, "outside")


def _fake_run(client, run_id: str = "20240101-000000-001") -> Path:
    folder = client.app.state.studio.folders.runs / run_id
    folder.mkdir()
    (folder / "studio.json").write_text(json.dumps({"id": run_id, "kind": "nst", "label": "x", "status": "finished",
                                                    "created": 1.0}))
    (folder / "result.png").write_bytes(png(np.zeros((4, 4, 3))))
    return folder


def test_zip_and_run_files_leave_out_links_out_of_the_studio(client, tmp_path):
    folder = _fake_run(client)
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret")
    (tmp_path / "secret_dir").mkdir()
    (tmp_path / "secret_dir" / "inner.txt").write_text("the secret")
    os.symlink(secret, folder / "notes.txt")
    os.symlink(tmp_path / "secret_dir", folder / "linked")
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/api/runs/{folder.name}/zip").content))
    assert sorted(z.namelist()) == [f"{folder.name}/result.png", f"{folder.name}/studio.json"]
    assert all(b"the secret" not in z.read(n) for n in z.namelist())
    one_line_error(client.get(f"/api/runs/{folder.name}/files/notes.txt"), 403)
    # a run folder that is itself a link out of runs/
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "studio.json").write_text(json.dumps({"id": "x", "kind": "nst", "created": 2.0}))
    (elsewhere / "config.yaml").write_text("secret: 1\n")
    os.symlink(elsewhere, client.app.state.studio.folders.runs / "linked-run")
    for url in ("/api/runs/linked-run", "/api/runs/linked-run/zip", "/api/runs/linked-run/files/config.yaml",
                "/api/compare.png?ids=linked-run"):
        assert client.get(url).status_code in (403, 404), url
    assert [r["id"] for r in client.get("/api/runs").json()] == [folder.name]


# ---------------------------------------------------------------- 4. secrets never reach a run record


def test_command_line_redaction():
    from nst.outputs import command_line

    argv = ["studio/__main__.py", "--token", "sesame", "--folder", "f", "--api-key=k1", "--password", "pw",
            "--set", "model.weights=w.h5", "http://h/?token=abc&x=1", "--secret-file", "s"]
    line = command_line(argv)
    for secret in ("sesame", "k1", "pw", "abc"):
        assert secret not in line.split() and f"={secret}" not in line, line
    assert "--token ***" in line and "--api-key=***" in line and "--folder f" in line and "x=1" in line
    assert "model.weights=w.h5" in line


@pytest.mark.slow
def test_the_studio_token_is_not_in_run_json(tmp_path, monkeypatch, content_path, style_path):
    monkeypatch.setattr(sys, "argv", ["/x/studio/__main__.py", "--token", "sesame-open", "--folder", "f"])
    with TestClient(create_app(tmp_path / "s", token="sesame-open"), base_url=BASE,
                    headers={"X-Studio-Token": "sesame-open"}) as c:
        job = c.post("/api/runs", json={"kind": "nst", "values": values(content_path, style_path, **{
            "optimizer.iterations": "2"})}).json()
        import time

        end = time.time() + 300
        while c.get(f"/api/runs/{job['id']}").json()["status"] in ("queued", "running") and time.time() < end:
            time.sleep(0.2)
        folder = c.app.state.studio.folders.runs / job["id"]
        record = json.loads((folder / "run.json").read_text())
        assert record["status"] == "finished"
        zipped = c.get(f"/api/runs/{job['id']}/zip").content
    assert "--token ***" in record["command"]
    for p in folder.iterdir():
        assert b"sesame-open" not in p.read_bytes(), p.name
    assert b"sesame-open" not in zipped


# ---------------------------------------------------------------- minor cases


def test_long_and_deep_paths_are_400_not_500(client):
    for bad in ("a" * 5000 + ".png", "a/" * 3000 + "x.png", "/" + "b" * 300 + "/c.png"):
        for url in ("/api/file", "/api/palette"):
            one_line_error(client.get(url, params={"path": bad}), 400, "too long")
        one_line_error(client.post("/api/automap", json={"image": bad}), 400, "too long")


def test_a_symlink_loop_is_refused_not_a_crash(client):
    uploads = client.app.state.studio.folders.uploads
    os.symlink(uploads / "loop-b.png", uploads / "loop-a.png")
    os.symlink(uploads / "loop-a.png", uploads / "loop-b.png")
    resp = client.get("/api/file", params={"path": str(uploads / "loop-a.png")})
    assert resp.status_code in (400, 403), resp.text
    one_line_error(resp, resp.status_code)
    assert client.get("/api/images").status_code == 200


def test_one_broken_history_entry_does_not_break_the_list(client):
    good = _fake_run(client, "20240101-000000-001")
    runs = good.parent
    for name, text in (("20240101-000000-002", "{not json"), ("20240101-000000-003", "[1, 2]"),
                       ("20240101-000000-004", json.dumps({"created": "yesterday", "label": ["x"], "kind": 3}))):
        (runs / name).mkdir()
        (runs / name / "studio.json").write_text(text)
    (runs / "20240101-000000-005").mkdir()
    (runs / "20240101-000000-005" / "studio.json").mkdir()  # a folder where the file should be
    resp = client.get("/api/runs")
    assert resp.status_code == 200, resp.text
    ids = [r["id"] for r in resp.json()]
    assert good.name in ids and all(isinstance(r["created"], float) for r in resp.json())
    assert all(isinstance(r["label"], str) and r["kind"] in ("nst", "doodle") for r in resp.json())


def test_a_dangling_upload_does_not_break_the_picker(client):
    uploads = client.app.state.studio.folders.uploads
    (uploads / "real.png").write_bytes(png(np.zeros((4, 4, 3))))
    os.symlink(uploads / "gone.png", uploads / "dangling.png")
    os.symlink("/etc/passwd", uploads / "outside.png")
    resp = client.get("/api/images")
    assert resp.status_code == 200, resp.text
    assert resp.json()["uploads"] == [str(uploads / "real.png")]


def test_odd_bodies_are_one_line_errors(client, content_path, style_path):
    nested = "[" * 100_000 + "]" * 100_000
    one_line_error(client.post("/api/runs", content=nested, headers={"content-type": "application/json"}), 400)
    deep = {"kind": "nst", "values": {**values(content_path, style_path), "layers.style": {}}}
    node = deep["values"]
    for _ in range(200):
        node["layers.style"] = {"x": {}}
        node = node["layers.style"]["x"]
    one_line_error(client.post("/api/runs", json=deep), 400)
    for kind in (["nst"], {"a": 1}, 3, None):
        one_line_error(client.post("/api/runs", json={"kind": kind, "values": {}}), 400, "kind")
    one_line_error(client.post("/api/runs", json={"kind": "nst", "values": [1]}), 400, "values")
    one_line_error(client.post("/api/runs", json={"kind": "nst", "values": {"content": 3}}), 400)
    one_line_error(client.post("/api/runs", json={"kind": "nst", "values": {}, "label": {"x": 1}}), 400, "label")


def test_string_booleans_from_the_page_are_booleans(client, content_path, style_path):
    text = client.post("/api/config", json={"kind": "nst", "values": values(content_path, style_path, **{
        "optimizer.xla": "false", "optimizer.bounds": "true"})})
    assert text.status_code == 200, text.text
    import yaml

    saved = yaml.safe_load(text.text)
    assert saved["optimizer"]["xla"] is False and saved["optimizer"]["bounds"] is True
    one_line_error(client.post("/api/config", json={"kind": "nst", "values": values(content_path, style_path, **{
        "optimizer.xla": "maybe"})}), 400, "optimizer.xla")


def test_upload_errors_name_the_upload_not_the_temp_file(client):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3))
    for content in (png(rgb)[:200], b"hello", b""):
        msg = one_line_error(client.post("/api/upload", params={"name": "holiday.png"}, content=content), 400)
        assert "holiday.png" in msg and ".upload-" not in msg and str(client.app.state.studio.folders.root) not in msg


def test_the_queue_is_bounded(client, content_path, style_path, idle_worker, monkeypatch):
    monkeypatch.setattr(studio_jobs, "MAX_QUEUED", 3)
    body = {"kind": "nst", "values": values(content_path, style_path)}
    ids = [client.post("/api/runs", json=body).json()["id"] for _ in range(4)]  # one running + three waiting
    before = run_folders(client)
    one_line_error(client.post("/api/runs", json=body), 429, "queue")
    assert run_folders(client) == before == sorted(ids)
    for i in ids:
        client.post(f"/api/runs/{i}/cancel")


def test_html_in_labels_names_and_statuses_never_reaches_the_page(client, content_path, style_path, idle_worker):
    label = '<img src=x onerror="alert(1)">'
    job = client.post("/api/runs", json={"kind": "nst", "values": values(content_path, style_path),
                                         "label": label}).json()
    assert "<" not in job["label"] and ">" not in job["label"] and '"' not in job["label"]
    client.post(f"/api/runs/{job['id']}/cancel")
    runs = client.app.state.studio.folders.runs
    bad = runs / "<svg onload=alert(1)>"
    bad.mkdir()
    (bad / "studio.json").write_text(json.dumps({"kind": "<b>", "label": "<i>x</i>", "status": "<s>",
                                                 "created": 3.0}))
    forged = _fake_run(client, "20240101-000000-009")
    (forged / "studio.json").write_text(json.dumps({"kind": "<b>", "label": "<i>x</i>", "status": "<script>",
                                                    "created": 3.0}))
    (forged / "iter_<img src=x>.png").write_bytes(png(np.zeros((4, 4, 3))))
    rows = client.get("/api/runs").json()
    assert "<svg onload=alert(1)>" not in [r["id"] for r in rows]
    for r in rows:
        shown = json.dumps([r["id"], r["label"], r["kind"], r["status"], r["thumbnail"], r["snapshots"]])
        assert "<" not in shown and ">" not in shown, shown


def test_command_line_bad_host_and_busy_port_are_one_line(tmp_path):
    import socket

    def studio(*args):
        done = subprocess.run([sys.executable, "-m", "studio", "--folder", str(tmp_path / "s"), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        return done.returncode, lines

    rc, lines = studio("--host", "no-such-host.invalid", "--token", "t")
    assert rc == 2 and lines[-1].startswith("error: ") and "no-such-host.invalid" in lines[-1], lines
    assert not any("Traceback" in ln for ln in lines)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        rc, lines = studio("--port", str(busy.getsockname()[1]))
    assert rc == 2 and lines[-1].startswith("error: ") and "in use" in lines[-1], lines


# ---------------------------------------------------------------- hostile cases found while fixing the above


def test_request_bodies_and_compares_are_bounded(client, content_path, style_path):
    huge = json.dumps({"kind": "nst", "values": values(content_path, style_path), "label": "x" * (2 << 20)})
    one_line_error(client.post("/api/runs", content=huge, headers={"content-type": "application/json"}), 400,
                   "over the limit")
    assert run_folders(client) == []
    folder = _fake_run(client)
    ids = ",".join([folder.name] * 5 + [f"20240101-000000-{i:03d}" for i in range(100, 113)])
    one_line_error(client.get("/api/compare.png", params={"ids": ids}), 400, "at most 12")


def test_the_real_server_answers_to_its_names_only(tmp_path):
    """``python -m studio`` as started by hand: its own names and --allow-host pass, another Host does not."""
    import http.client

    proc = subprocess.Popen([sys.executable, "-m", "studio", "--port", "0", "--folder", str(tmp_path / "s"),
                             "--allow-host", "studio.lan", "--allow-host", "localhost:9000"], cwd=REPO, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        line = ""
        while "open http://" not in line:
            line = proc.stderr.readline()
            assert line, "the studio ended before it was listening"
        port = int(line.rsplit(":", 1)[1].strip("/\n"))

        def get(host: str) -> tuple[int, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/api/state", headers={"Host": host})
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            return resp.status, body

        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"studio.lan:{port}", "localhost:9000"):
            assert get(host)[0] == 200, host  # the last: what an SSH tunnel from port 9000 sends
        for host in (f"evil.example:{port}", "127.0.0.1:9000", "studio.lan:9000"):
            status, body = get(host)
            assert status == 400 and body["error"].startswith("error: refused a request for host"), host
    finally:
        proc.terminate()
        proc.wait(60)

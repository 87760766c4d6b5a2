"""The studio end to end in a real headless browser: Debian's chromium driven by Playwright's Python package.

One server (uvicorn in a thread, a temporary studio folder) serves every test here. The tests load the page at a
laptop's 1366x768 and check its first look (a loading state until the panels are filled, then no broken image,
placeholders where the preview and the curves will be, no horizontal scrolling); run a 64 px style transfer and watch the preview update and the result appear; save its settings as YAML and
re-run them with ``python -m nst.run`` for bit-identical pixels; paint a two-colour doodle, run it and check
that the result's regions follow the paint; cancel a run while a second browser watches it. Screenshots go to
``out/studio_screenshots/`` (git-ignored; ``first_look.png`` is the one docs/STUDIO.md shows). Skipped, saying why, only when chromium or playwright is missing.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright's Python package is missing (the studio extra)")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is missing (the studio extra)")

from studio.app import create_app  # noqa: E402

pytestmark = pytest.mark.slow
SHOTS = Path(__file__).resolve().parents[1] / "out" / "studio_screenshots"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studio")
    app = create_app(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        timeout_graceful_shutdown=2))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.time() + 20
    while not srv.started and time.time() < end:
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}/", "folder": folder, "app": app}
    srv.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server["url"])
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    yield pg
    ctx.close()
    assert not errors, errors


def shot(pg, name, full_page=False):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def set_field(pg, panel, key, value):
    sel = f"#field-{panel}-panel-{key.replace('.', '-')}"
    if isinstance(value, int) and pg.eval_on_selector(sel, "e => e.tagName") == "SELECT":
        pg.eval_on_selector(sel, f"(e) => {{ e.selectedIndex = {value}; e.dispatchEvent(new Event('change')); }}")
    else:
        pg.fill(sel, str(value))


def choose(pg, panel, key, label):
    pg.select_option(f"#field-{panel}-panel-{key.replace('.', '-')}", label=label)


def fast(pg, panel, iterations, **more):
    set_field(pg, panel, "image.size", 64)
    choose(pg, panel, "precision", "float32")
    choose(pg, panel, "optimizer.xla", "false")
    set_field(pg, panel, "optimizer.iterations", iterations)
    for k, v in more.items():
        set_field(pg, panel, k.replace("__", "."), v)


def finished_run(pg, timeout=180_000) -> str:
    pg.wait_for_function("document.querySelector('#preview').dataset.final !== undefined", timeout=timeout)
    return pg.eval_on_selector("#download-zip", "a => a.getAttribute('href').split('/')[3]")


# Every <img> that should show something has loaded; a hidden one without src is fine, a visible one without a
# picture (no src, or a src that did not decode) is the broken-image icon a newcomer would see.
BROKEN_IMAGES = """() => [...document.images].filter((i) => {
    const shown = i.getClientRects().length > 0 && getComputedStyle(i).visibility !== "hidden";
    const src = i.getAttribute("src");
    return src ? (i.complete && i.naturalWidth === 0) : shown;
  }).map((i) => i.id || i.alt || i.outerHTML.slice(0, 80))"""
IMAGES_SETTLED = "() => [...document.images].every((i) => !i.getAttribute('src') || i.complete)"
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth"


def test_first_look_at_1366x768_is_finished(browser, server):
    """What a newcomer sees on a laptop: while the schema is still on its way the panels say they are loading and
    Start waits; once filled, no broken image, placeholders saying what will appear, and no sideways scrolling."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    held = []
    pg.route("**/api/schema/nst", lambda route: held.append(route))  # answered below, once the loading state is seen
    pg.goto(server["url"])
    pg.wait_for_selector("#nst-panel .loading-note", state="visible")
    end = time.time() + 30
    while not held and time.time() < end:  # the page has asked for its schema; the answer is held back
        pg.wait_for_timeout(50)
    assert held, "the page never asked for its schema"
    assert pg.is_visible("#loading") and "Loading" in pg.text_content("#loading")
    assert pg.is_disabled("#nst-start") and pg.is_disabled("#nst-save")
    assert pg.locator("#nst-panel .field").count() == 0
    shot(pg, "first_look_loading")
    held[0].continue_()
    pg.unroute("**/api/schema/nst")

    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    pg.wait_for_function(IMAGES_SETTLED, timeout=30_000)
    assert pg.evaluate(BROKEN_IMAGES) == []
    # the panels are filled: every config key, the presets, the pickers; no loading note is left
    assert pg.locator("#nst-panel .field").count() >= 20 and pg.locator("#doodle-panel .field").count() >= 20
    assert pg.eval_on_selector_all(".loading-note", "ns => ns.map((n) => n.parentElement.id)") == []
    assert not pg.is_visible("#loading")
    assert pg.eval_on_selector("#nst-preset", "s => s.options[s.selectedIndex].text") == "quick"
    assert pg.eval_on_selector("#nst-content img", "i => i.naturalWidth") > 0
    assert pg.locator("#nst-styles .style-row").count() >= 1
    assert not pg.is_disabled("#nst-start")
    # where the run will show: a placeholder that says so, not an empty image
    assert pg.is_hidden("#preview") and pg.is_visible("#preview-placeholder")
    assert "live preview appears here" in pg.text_content("#preview-placeholder")
    width = pg.evaluate(NO_SIDEWAYS_SCROLL)
    assert width <= 1366, f"the page is {width} px wide at a 1366 px window: it scrolls sideways"
    shot(pg, "first_look")
    # the other tabs at the same size: filled, nothing broken, nothing sideways
    pg.click("#tab-doodle")
    pg.wait_for_selector("#swatch-1")
    pg.wait_for_function(IMAGES_SETTLED, timeout=30_000)
    assert pg.evaluate(BROKEN_IMAGES) == [] and pg.evaluate(NO_SIDEWAYS_SCROLL) <= 1366
    assert pg.is_hidden("#doodle-style-automap") and pg.is_hidden("#doodle-content-automap")
    shot(pg, "first_look_doodle")
    pg.click("#tab-runs")
    assert pg.evaluate(BROKEN_IMAGES) == [] and pg.evaluate(NO_SIDEWAYS_SCROLL) <= 1366
    ctx.close()
    assert not errors, errors


def test_style_transfer_live_preview_result_and_cli_rerun(page, server, tmp_path, run_cli):
    pg = page
    assert pg.title() == "nst studio"
    assert pg.input_value("#nst-content select") .endswith("tubingen.jpg")
    fast(pg, "nst", 16, snapshots="[8]")
    pg.click("#nst-start")
    pg.wait_for_function("Number(document.querySelector('#preview').dataset.version || 0) >= 1", timeout=120_000)
    versions = {pg.get_attribute("#preview", "data-version")}
    shot(pg, "nst_running")
    run_id = finished_run(pg)
    versions.add(pg.get_attribute("#preview", "data-version"))
    assert len(versions) >= 2, f"the preview never changed: {versions}"
    assert pg.eval_on_selector("#preview", "i => i.dataset.final") == "result"
    assert pg.is_visible("#download-result") and pg.locator("#snapshots figure").count() == 2  # iter_0008, result
    pg.wait_for_function("document.querySelector('#preview').naturalWidth > 0")
    assert pg.eval_on_selector("#preview", "i => Math.max(i.naturalWidth, i.naturalHeight)") == 64
    shot(pg, "nst_finished")
    # save the same settings as YAML from the page; the CLI gives the same pixels
    with pg.expect_download() as dl:
        pg.click("#nst-save")
    saved = tmp_path / "saved.yaml"
    dl.value.save_as(saved)
    res = run_cli([saved, "--output", tmp_path / "cli"])
    assert res.rc == 0, res.err
    studio_png = np.asarray(Image.open(server["folder"] / "runs" / run_id / "result.png"))
    cli_png = np.asarray(Image.open(tmp_path / "cli" / "result.png"))
    assert studio_png.shape == cli_png.shape and np.array_equal(studio_png, cli_png)


def region_means(img: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.array([img[labels == i].mean(axis=0) for i in range(k)])


def test_doodle_painted_with_two_colours_follows_the_paint(page, server, data_dir):
    pg = page
    pg.click("#tab-doodle")
    pg.wait_for_selector("#swatch-2")
    pg.fill("#doodle-canvas-size", "64")
    pg.click("#doodle-resize")
    # sky (label 0, white) everywhere, then sea (label 2, blue) painted over the lower half
    pg.click("#swatch-0"); pg.click("#tool-fill")
    box = pg.locator("#doodle-canvas").bounding_box()
    pg.mouse.click(box["x"] + 5, box["y"] + 5)
    pg.click("#swatch-2"); pg.click("#tool-brush")
    pg.fill("#brush-size", "16")
    pg.dispatch_event("#brush-size", "input")
    for frac in (0.6, 0.72, 0.84, 0.96):
        y = box["y"] + box["height"] * frac
        pg.mouse.move(box["x"] + 1, y)
        pg.mouse.down()
        pg.mouse.move(box["x"] + box["width"] - 1, y, steps=12)
        pg.mouse.up()
    shot(pg, "doodle_painted")
    fast(pg, "doodle", 24, doodle__phases=2)
    pg.click("#doodle-start")
    run_id = finished_run(pg, timeout=240_000)
    pg.wait_for_function("document.querySelector('#preview').naturalWidth > 0")
    shot(pg, "doodle_finished")
    assert pg.eval_on_selector("#preview", "i => i.dataset.final") == "result"

    folder = server["folder"] / "runs" / run_id
    cfg = json.loads((folder / "run.json").read_text())["config"]
    painted = np.asarray(Image.open(cfg["doodle"]["target_map"]).convert("RGB"))
    colours = {tuple(c) for c in painted.reshape(-1, 3)}
    assert colours == {(255, 255, 255), (0, 0, 255)}, f"the painter left colours outside the palette: {colours}"
    result = np.asarray(Image.open(folder / "result.png").convert("RGB"), dtype=np.float64)
    lab = np.asarray(Image.fromarray((painted[..., 2] > 0) & (painted[..., 0] == 0)).resize(
        result.shape[1::-1], Image.NEAREST)).astype(int)  # 1 = sea (blue), 0 = sky (white)
    assert 0.2 < lab.mean() < 0.8
    style = np.asarray(Image.open(data_dir / "doodle" / "Monet.jpg").convert("RGB"), dtype=np.float64)
    sem = np.asarray(Image.open(data_dir / "doodle" / "Monet_sem.png").convert("RGB"))
    style_lab = np.full(sem.shape[:2], -1)
    style_lab[(sem == (255, 255, 255)).all(-1)] = 0
    style_lab[(sem == (0, 0, 255)).all(-1)] = 1
    want = np.array([style[style_lab == i].mean(axis=0) for i in range(2)])
    got = region_means(result, lab, 2)
    for i in range(2):
        near, far = np.linalg.norm(got[i] - want[i]), np.linalg.norm(got[i] - want[1 - i])
        assert near < far, f"region {i}: mean {got[i]} is closer to the other style region {want[1 - i]}"


def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_make_map_fills_the_style_map_and_the_canvas(page, server):
    """A style image without a map: "Make map" makes one and it becomes the palette; then the content
    photo's map, in those colours, lands in the canvas to retouch."""
    pg = page
    pg.click("#tab-doodle")
    pg.wait_for_selector("#swatch-2")
    yy, xx = np.mgrid[0:64, 0:96]
    top = yy < 32
    style = np.where(top[..., None], [70, 130, 220], [40, 150, 60]).astype(float)
    style[~top] += np.random.default_rng(0).normal(0, 6, (int((~top).sum()), 3))
    style[top] += (8 * np.sin(xx * 1.3))[top][:, None]
    style = np.clip(style, 0, 255).astype(np.uint8)
    pg.set_input_files("#doodle-style input[type=file]",
                       files=[{"name": "stripes.png", "mimeType": "image/png", "buffer": png_bytes(style)}])
    pg.wait_for_function("/stripes\\.png$/.test(document.querySelector('#doodle-style select').value)")
    assert pg.input_value("#doodle-style-map select") == ""  # no map beside it: nothing to paint with yet
    pg.fill("#automap-labels", "2")
    pg.click("#doodle-make-style-map")
    assert pg.is_disabled("#doodle-make-style-map")  # disabled while the server works
    pg.wait_for_function("/stripes_sem\\.png$/.test(document.querySelector('#doodle-style-map select').value)",
                         timeout=120_000)
    pg.wait_for_selector("#swatch-1")
    assert pg.locator(".swatch").count() == 2 and not pg.is_disabled("#doodle-make-style-map")
    pg.wait_for_function("document.querySelector('#doodle-style-automap img').naturalWidth === 96")
    made = pg.get_attribute("#doodle-style-automap", "data-path")
    assert made == pg.input_value("#doodle-style-map select")
    assert pg.get_attribute("#doodle-style-automap a", "download") == "stripes_sem.png"
    made_rgb = np.asarray(Image.open(made).convert("RGB"))
    palette = {tuple(c) for c in made_rgb.reshape(-1, 3)}
    assert len(palette) == 2 and tuple(made_rgb[0, 0]) != tuple(made_rgb[-1, 0])  # top and bottom differ

    # the content photo (upside down): its map lands in the canvas in the style map's colours
    pg.set_input_files("#doodle-content input[type=file]",
                       files=[{"name": "upside.png", "mimeType": "image/png", "buffer": png_bytes(style[::-1].copy())}])
    pg.wait_for_function("/upside\\.png$/.test(document.querySelector('#doodle-content select').value)")
    pg.click("#doodle-make-content-map")
    pg.wait_for_function("/upside_sem\\.png$/.test(document.querySelector('#doodle-start-map select').value)",
                         timeout=120_000)
    pg.wait_for_function("!document.querySelector('#doodle-make-content-map').disabled")
    shot(pg, "doodle_make_map", full_page=True)
    w, h, data = pg.evaluate("""() => { const c = document.querySelector('#doodle-canvas');
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""")
    canvas = np.asarray(data, np.uint8).reshape(h, w, 4)[..., :3]
    assert {tuple(c) for c in canvas.reshape(-1, 3)} == palette
    assert tuple(canvas[0, 0]) == tuple(made_rgb[-1, 0]) and tuple(canvas[-1, 0]) == tuple(made_rgb[0, 0])


def test_cancel_while_a_second_browser_watches(page, browser, server):
    pg = page
    fast(pg, "nst", 400)
    pg.click("#nst-start")
    pg.wait_for_function("/iteration ([2-9]|\\d\\d+)\\//.test(document.querySelector('#live-status').textContent)",
                         timeout=120_000)
    other = browser.new_page()
    other.goto(server["url"])
    other.wait_for_function("/running/.test(document.querySelector('#live-status').textContent)", timeout=30_000)
    pg.click("#cancel")
    finished_run(pg, timeout=60_000)
    assert "cancelled" in pg.text_content("#live-status")
    other.wait_for_function("/cancelled/.test(document.querySelector('#live-status').textContent)", timeout=30_000)
    shot(pg, "nst_cancelled")
    run_id = pg.eval_on_selector("#download-zip", "a => a.getAttribute('href').split('/')[3]")
    folder = server["folder"] / "runs" / run_id
    assert json.loads((folder / "run.json").read_text())["status"] == "cancelled"
    assert not (folder / "result.png").exists()
    # the runs tab lists the runs with their status; compare draws the curves of two
    pg.click("#tab-runs")
    pg.wait_for_selector("#runs-table tbody tr")
    rows = pg.locator("#runs-table tbody tr").count()
    assert rows >= 1
    for i in range(min(2, rows)):  # with the whole file run: the cancelled run and the doodle on shared axes
        pg.locator(".run-pick").nth(i).check()
    pg.click("#runs-compare")
    pg.wait_for_function("document.querySelector('#compare-img').naturalWidth > 0", timeout=30_000)
    shot(pg, "runs")
    other.close()

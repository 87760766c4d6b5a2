"""The studio's HTTP routes (Starlette): the page, its JSON API, server-sent progress events, files.

Every error leaves as ``{"error": "error: <one line>"}``, the CLI's message; a bug is logged on the server and
the page gets one line, never a stack trace. Every file route confines its path (:meth:`Folders.confine`).
With a token (required off loopback) every request must carry it: ``?token=`` once (then a cookie), or the
``X-Studio-Token`` header.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import tempfile
import traceback
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nst.errors import UserError
from studio import automaps, history, schema
from studio.files import CONFIGS, MAX_UPLOAD_BYTES, Folders
from studio.jobs import Job, Manager

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "studio_token"


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message if message.startswith("error:") else f"error: {message}"}, status)


class Studio:
    """The state behind the routes: the folders and the run manager."""

    def __init__(self, folder: str | Path):
        self.folders = Folders(folder)
        self.manager = Manager(self.folders.runs)

    def live(self) -> dict[str, dict]:
        return {j.id: j.summary() for j in self.manager.jobs.values()}

    def job(self, run_id: str) -> Job:
        job = self.manager.jobs.get(run_id)
        if job is None:
            raise UserError(f"run {run_id} is not running in this studio")
        return job

    def check_inputs(self, cfg) -> None:
        """Image paths of a config must lie in the studio's folders, as every other file the page names."""
        paths = [cfg.content, cfg.init.path]
        if isinstance(cfg.style, list):
            paths += [s.path for s in cfg.style]
        else:
            paths += [cfg.style, cfg.doodle.style_map, cfg.doodle.target_map, cfg.doodle.content_map]
        for p in paths:
            if p:
                self.folders.confine(p, "input image")


def create_app(folder: str | Path, token: str | None = None) -> Starlette:
    studio = Studio(folder)

    async def index(request: Request) -> Response:
        response = FileResponse(STATIC / "index.html")
        if token and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    async def get_schema(request: Request) -> Response:
        kind = request.path_params["kind"]
        return JSONResponse({"fields": schema.fields(kind), "input_keys": list(schema.input_keys(kind))})

    def presets(request: Request) -> Response:
        """The shipped configs/ that load with this kind's schema, as panel values plus their inputs."""
        from nst.config import to_dict

        kind = request.path_params["kind"]
        spec = schema.kind_of(kind)
        out = []
        for path in sorted(CONFIGS.glob("*.yaml")):
            try:
                cfg = spec.load(path, [])
            except UserError:
                continue  # a figure config, or the other kind's
            data = to_dict(cfg)
            out.append({"name": path.stem, "values": schema.panel_values(kind, data),
                        "inputs": {k: _dotted(data, k) for k in schema.input_keys(kind) if k != "output_dir"}})
        return JSONResponse(out)

    def images(request: Request) -> Response:
        return JSONResponse(studio.folders.images())

    async def upload(request: Request) -> Response:
        name = request.query_params.get("name", "")
        declared = int(request.headers.get("content-length") or 0)
        if declared > MAX_UPLOAD_BYTES:
            return error(f"upload {Path(name).name} is over the limit of {MAX_UPLOAD_BYTES // 2**20} MB", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                return error(f"upload {Path(name).name} is over the limit of {MAX_UPLOAD_BYTES // 2**20} MB", 413)
            chunks.append(chunk)
        path = await run_in_threadpool(studio.folders.save_upload, chunks, name, MAX_UPLOAD_BYTES)
        return JSONResponse({"path": str(path)})

    def get_file(request: Request) -> Response:
        path = studio.folders.confine(request.query_params.get("path", ""))
        if not path.is_file():
            raise UserError(f"file not found: {request.query_params.get('path')}")
        return FileResponse(path)

    def palette(request: Request) -> Response:
        """The labels of a style image's map (or of a map itself): colours, shares, map size."""
        from doodle.maps import load_map, pair_map_path

        path = studio.folders.confine(request.query_params.get("path", ""), "image")
        map_path = path if path.stem.endswith("_sem") else pair_map_path(path)
        if map_path is None:
            raise UserError(f"no semantic map beside {path.name} (expected {path.stem}_sem.png)")
        return JSONResponse(automaps.describe_map(load_map(map_path), map_path))

    async def automap(request: Request) -> Response:
        """Make a semantic map of an image (and match it to the style's): a new _sem.png in uploads/."""
        req = automaps.parse_request(await body(request), studio.folders)
        return JSONResponse(await run_in_threadpool(automaps.make_map, req, studio.folders))

    async def body(request: Request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            raise UserError("request body is not JSON") from None
        if not isinstance(data, dict):
            raise UserError("request body must be a JSON object")
        return data

    def _build(data: dict, output_dir: Path):
        kind = data.get("kind", "nst")
        values = data.get("values") or {}
        if not isinstance(values, dict):
            raise UserError("values must be an object of config keys")
        cfg = schema.build_config(kind, values, output_dir)
        studio.check_inputs(cfg)
        return kind, cfg

    async def start(request: Request) -> Response:
        data = await body(request)
        run_id = studio.manager.new_id()
        kind, cfg = await run_in_threadpool(_build, data, studio.folders.runs / run_id)
        label = str(data.get("label") or "")[:80] or _label(kind, cfg)
        job = studio.manager.submit(Job(run_id, kind, cfg, label), schema.config_yaml(cfg, kind))
        return JSONResponse(job.summary())

    async def save_config(request: Request) -> Response:
        """The settings as a YAML config for ``python -m nst.run`` / ``doodle.run`` (same result, bit for bit)."""
        data = await body(request)
        kind, cfg = await run_in_threadpool(_build, data, Path("runs") / "studio")
        return Response(schema.config_yaml(cfg, kind), media_type="application/x-yaml",
                        headers={"Content-Disposition": f'attachment; filename="studio_{kind}.yaml"'})

    def state(request: Request) -> Response:
        return JSONResponse(studio.manager.state())

    async def events(request: Request) -> Response:
        """Server-sent events: the whole live state whenever it changes (polled, at most 5 a second)."""

        async def stream():
            seen, quiet = -1, 0.0
            while not studio.manager.stopping:
                if studio.manager.version != seen:
                    st = studio.manager.state()
                    seen, quiet = st["version"], 0.0
                    yield f"data: {json.dumps(st)}\n\n"
                elif quiet > 15:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.2)
                quiet += 0.2

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def runs(request: Request) -> Response:
        return JSONResponse(history.list_runs(studio.folders.runs, studio.live()))

    def run_detail(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        return JSONResponse(history.run_detail(studio.folders.run_dir(run_id), studio.live().get(run_id)))

    def preview(request: Request) -> Response:
        job = studio.job(request.path_params["run_id"])
        if job.preview is None:
            raise UserError(f"run {job.id} has no preview yet")
        return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})

    def run_file(request: Request) -> Response:
        folder = studio.folders.run_dir(request.path_params["run_id"])
        path = studio.folders.confine(folder / request.path_params["name"])
        if path.parent != folder.resolve() or not path.is_file():
            raise UserError(f"no file {request.path_params['name']} in run {folder.name}")
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    def run_zip(request: Request) -> Response:
        folder = studio.folders.run_dir(request.path_params["run_id"])
        if not (folder / "studio.json").is_file():
            raise UserError(f"no such run: {folder.name}")
        return Response(history.zip_folder(folder), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{folder.name}.zip"'})

    def cancel(request: Request) -> Response:
        return JSONResponse(studio.manager.cancel(request.path_params["run_id"]).summary())

    def compare(request: Request) -> Response:
        """Loss curves of several runs on shared axes (nst.plot's figure)."""
        from nst.plot import plot_runs

        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not ids:
            raise UserError("compare needs ids=RUN,RUN")
        folders = [studio.folders.run_dir(i) for i in ids]
        with tempfile.TemporaryDirectory(dir=studio.folders.root) as tmp:
            out = plot_runs(folders, Path(tmp) / "compare.png", log=request.query_params.get("log") == "1")
            return Response(out.read_bytes(), media_type="image/png", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/schema/{kind}", get_schema),
        Route("/api/presets/{kind}", presets),
        Route("/api/images", images),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/file", get_file),
        Route("/api/palette", palette),
        Route("/api/automap", automap, methods=["POST"]),
        Route("/api/config", save_config, methods=["POST"]),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/runs", runs, methods=["GET"]),
        Route("/api/runs", start, methods=["POST"]),
        Route("/api/runs/{run_id}", run_detail),
        Route("/api/runs/{run_id}/preview.png", preview),
        Route("/api/runs/{run_id}/files/{name}", run_file),
        Route("/api/runs/{run_id}/zip", run_zip),
        Route("/api/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/api/compare.png", compare),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(studio.manager.shutdown)  # cancel the run; its folder is recorded as the CLI's

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(BaseHTTPMiddleware, dispatch=_guard(token))],
                    exception_handlers={UserError: _user_error, HTTPException: _http_error, Exception: _bug})
    app.state.studio = studio
    return app


def _guard(token: str | None):
    async def dispatch(request: Request, call_next):
        if token:
            given = (request.headers.get("x-studio-token") or request.cookies.get(TOKEN_COOKIE)
                     or request.query_params.get("token") or "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error("this studio needs its token: open the URL printed at its start (…/?token=…)", 403)
        try:
            return await call_next(request)
        except UserError as exc:
            return _status_error(exc)
    return dispatch


def _status_error(exc: UserError) -> JSONResponse:
    text = str(exc)
    status = 403 if "outside the studio" in text else 404 if ("not found" in text or "no such" in text
                                                                or "no file" in text) else 400
    return error(text, status)


async def _user_error(request: Request, exc: UserError) -> JSONResponse:
    return _status_error(exc)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    what = "no such page or file" if exc.status_code == 404 else exc.detail
    return error(f"{what}: {request.url.path}", exc.status_code)


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    traceback.print_exception(exc, file=sys.stderr)
    return error(f"internal error ({type(exc).__name__}); see the server log", 500)


def _dotted(data: dict, key: str):
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _label(kind: str, cfg) -> str:
    if kind == "nst":
        styles = "+".join(Path(s.path).stem for s in cfg.style)
        return f"{Path(cfg.content).stem} × {styles}"
    target = cfg.doodle.target_map or cfg.doodle.content_map
    return f"doodle {Path(target).stem if target else ''} × {Path(cfg.style).stem}"

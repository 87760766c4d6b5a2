"""The studio's HTTP routes (Starlette): the page, its JSON API, server-sent progress events, files.

Every error leaves as ``{"error": "error: <one line>"}``, the CLI's message; a bug is logged on the server and
the page gets one line, never a stack trace. Every path a request names — a file route's, every path key of a
posted config, the zip's members — goes through the one :meth:`Folders.confine`. Who may send requests at all
(Host, origin, token) and the headers of every response are :mod:`studio.guard`'s.
"""

from __future__ import annotations

import asyncio
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
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nst.errors import UserError
from studio import automaps, history, schema
from studio.files import CONFIGS, MAX_UPLOAD_BYTES, Folders, shown
from studio.guard import LOOPBACK_NAMES, TOKEN_COOKIE, Guard
from studio.jobs import Job, Manager

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_DEPTH = 32  # JSON nesting of a request body: a panel value is a few levels deep at most
MAX_BODY_BYTES = 1 << 20  # a JSON request body (settings, a map request): a few kB in practice
MAX_COMPARE = 12  # runs on one compare plot: its legend grows with them


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message if message.startswith("error:") else f"error: {message}"}, status)


class Studio:
    """The state behind the routes: the folders and the run manager."""

    def __init__(self, folder: str | Path, where=None):
        self.folders = Folders(folder)
        self.manager = Manager(self.folders.runs, where)

    def live(self) -> dict[str, dict]:
        return {j.id: j.summary() for j in self.manager.jobs.values()}

    def job(self, run_id: str) -> Job:
        job = self.manager.jobs.get(run_id)
        if job is None:
            raise UserError(f"run {run_id} is not running in this studio")
        return job

    def check_inputs(self, cfg, kind: str) -> None:
        """Every path key of a config (content, styles, init.path, model.weights, maps) must lie in the
        studio's folders, as every other file the page names: the server opens no file outside them."""
        for key, value in schema.config_paths(cfg, kind):
            self.folders.confine(value, f"config key '{key}':")


def create_app(folder: str | Path, token: str | None = None, hosts=LOOPBACK_NAMES, any_ip: bool = False,
               where=None) -> Starlette:
    """The app; ``hosts`` (and ``any_ip``) are the names its Host header may carry (:class:`studio.guard.Guard`);
    ``where`` (:class:`nst.cluster.Where`): where a print's tiles run (None: here, one after another)."""
    studio = Studio(folder, where)

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
        declared = request.headers.get("content-length") or "0"
        over = f"upload {shown(Path(name).name)} is over the limit of {MAX_UPLOAD_BYTES // 2**20} MB"
        if not declared.isdigit():
            raise UserError(f"upload {shown(Path(name).name)}: Content-Length {declared[:20]!r} is not a size")
        if int(declared) > MAX_UPLOAD_BYTES:
            return error(over, 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                return error(over, 413)
            chunks.append(chunk)
        path = await run_in_threadpool(studio.folders.save_upload, chunks, name, MAX_UPLOAD_BYTES)
        return JSONResponse({"path": str(path)})

    def get_file(request: Request) -> Response:
        path = studio.folders.confine(request.query_params.get("path", ""))
        if not studio.folders.is_file(path):
            raise UserError(f"file not found: {shown(request.query_params.get('path'))}")
        return FileResponse(path)

    def palette(request: Request) -> Response:
        """The labels of a style image's map (or of a map itself): colours, shares, map size."""
        from doodle.maps import load_map, pair_map_path

        path = studio.folders.confine(request.query_params.get("path", ""), "image")
        map_path = path if path.stem.endswith("_sem") else pair_map_path(path)
        if map_path is None:
            raise UserError(f"no semantic map beside {shown(path.name)} (expected {shown(path.stem)}_sem.png)")
        map_path = studio.folders.confine(map_path, "semantic map")  # the paired map may be a link out
        return JSONResponse(automaps.describe_map(load_map(map_path), map_path))

    async def automap(request: Request) -> Response:
        """Make a semantic map of an image (and match it to the style's): a new _sem.png in uploads/."""
        req = automaps.parse_request(await body(request), studio.folders)
        return JSONResponse(await run_in_threadpool(automaps.make_map, req, studio.folders))

    async def body(request: Request) -> dict:
        """The request's JSON object: at most MAX_BODY_BYTES (counted as it streams in), MAX_BODY_DEPTH deep."""
        over = f"request body is over the limit of {MAX_BODY_BYTES // 1024} kB"
        declared = request.headers.get("content-length") or "0"
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise UserError(over)
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                raise UserError(over)
        try:
            data = json.loads(bytes(raw))
        except RecursionError:
            raise UserError(f"request body is nested too deeply (at most {MAX_BODY_DEPTH} levels)") from None
        except ValueError:
            raise UserError("request body is not JSON") from None
        if not isinstance(data, dict):
            raise UserError("request body must be a JSON object")
        if _depth(data) > MAX_BODY_DEPTH:
            raise UserError(f"request body is nested too deeply (at most {MAX_BODY_DEPTH} levels)")
        return data

    def _build(data: dict, output_dir: Path):
        kind = data.get("kind", "nst")
        if not isinstance(kind, str):
            raise UserError(f"kind must be nst or doodle, got {shown(json.dumps(kind))}")
        values = data.get("values") or {}
        if not isinstance(values, dict):
            raise UserError("values must be an object of config keys")
        try:
            cfg = schema.build_config(kind, values, output_dir)
        except (OSError, RuntimeError) as exc:  # a path that cannot be resolved (too long, a symlink loop)
            raise UserError(f"a path in the settings cannot be used: {shown(str(exc))}") from None
        studio.check_inputs(cfg, kind)
        return kind, cfg

    async def start(request: Request) -> Response:
        data = await body(request)
        label = data.get("label")
        if label is not None and not isinstance(label, str):
            raise UserError("label must be text")
        run_id = studio.manager.new_id()
        kind, cfg = await run_in_threadpool(_build, data, studio.folders.runs / run_id)
        label = history.clean_label(label or "") or history.clean_label(_label(kind, cfg))
        job = await run_in_threadpool(studio.manager.submit, Job(run_id, kind, cfg, label),
                                      schema.config_yaml(cfg, kind))
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
        return JSONResponse(history.list_runs(studio.folders, studio.live()))

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
        if path.parent != folder.resolve() or not studio.folders.is_file(path):
            raise UserError(f"no file {shown(request.path_params['name'])} in run {folder.name}")
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    def run_zip(request: Request) -> Response:
        folder = studio.folders.run_dir(request.path_params["run_id"])
        if not (folder / "studio.json").is_file():
            raise UserError(f"no such run: {folder.name}")
        return Response(history.zip_folder(folder, studio.folders.confine), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{folder.name}.zip"'})

    def cancel(request: Request) -> Response:
        return JSONResponse(studio.manager.cancel(request.path_params["run_id"]).summary())

    def compare(request: Request) -> Response:
        """Loss curves of several runs on shared axes (nst.plot's figure)."""
        from nst.plot import plot_runs

        ids = list(dict.fromkeys(i for i in request.query_params.get("ids", "").split(",") if i))
        if not ids:
            raise UserError("compare needs ids=RUN,RUN")
        if len(ids) > MAX_COMPARE:
            raise UserError(f"compare takes at most {MAX_COMPARE} runs, got {len(ids)}")
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
                    middleware=[Middleware(Guard, token=token, hosts=hosts, any_ip=any_ip)],
                    exception_handlers={UserError: _user_error, HTTPException: _http_error, Exception: _bug})
    app.state.studio = studio
    return app


def _depth(data) -> int:
    """How deeply a parsed JSON value nests (walked without recursion)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_BODY_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((c, d + 1) for c in children)
    return deepest


def _status_error(exc: UserError) -> JSONResponse:
    text = str(exc)
    status = getattr(exc, "status", None) or (
        403 if "outside the studio" in text else
        404 if ("not found" in text or "no such" in text or "no file" in text) else 400)
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

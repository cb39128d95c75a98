"""What keeps the app safe on a hospital network: no report/instruction/answer text in the logs, destructive
MONAI Label endpoints refused unless configured, and uploads that only their own request can use.

MONAI Label logs every request's params at INFO (``Infer Request: {... 'report': ...}``) and serves that log
to anyone at ``GET /logs``; it offers ``PUT``/``DELETE /model/<name>`` (which renames the weights folder) and
``PUT``/``DELETE /datastore/...``. Our tasks need none of these: the text lines are dropped and our own line
logs ids, sizes and timings; the endpoints answer 403 unless the app conf turns them on.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from starlette.responses import JSONResponse

__all__ = ["drop_text_logging", "describe_request", "guard_endpoints", "UploadRegistry", "DESTRUCTIVE"]

# loggers of MONAI Label that write the whole request (params included) at INFO
TEXT_LOGGERS = ("monailabel.endpoints.infer", "monailabel.tasks.infer.basic_infer", "monailabel.interfaces.app")
TEXT_LINES = ("Infer Request",)
# (path prefix, methods, app conf key that allows them)
DESTRUCTIVE = (
    ("/model/", {"PUT", "DELETE"}, "allow_model_changes"),
    ("/datastore/", {"PUT", "DELETE", "POST"}, "allow_datastore_writes"),
)


class _DropRequestText(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(str(record.msg).startswith(line) for line in TEXT_LINES)


def drop_text_logging() -> None:
    """Remove MONAI Label's request-dump lines (they hold report and instruction text) from its loggers."""
    for name in TEXT_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropRequestText) for f in log.filters):
            log.addFilter(_DropRequestText())


def describe_request(request: dict) -> str:
    """A log-safe summary: model, image id (an upload as 'upload'), and the params' names with their sizes."""
    image = request.get("image")
    image = "upload" if isinstance(image, str) and os.path.isabs(image) else image
    sizes = {k: (f"{len(v)} chars" if isinstance(v, str) else type(v).__name__) for k, v in request.items() if k not in ("model", "image")}
    return f"model={request.get('model')} image={image} params={sizes}"




def _current_conf_flag(scope):
    """The conf reader of the app that will answer this request, kept on the FastAPI app's ``state`` (one place
    however often MONAI Label re-imports our app module). MONAI Label builds its app lazily, and a test client
    rebuilds it with other conf: building it sets the reader. If it cannot be built, guarded endpoints stay refused."""
    try:
        from monailabel.interfaces.utils.app import app_instance

        app_instance()
    except Exception:  # noqa: BLE001 - the endpoint itself reports why the app cannot start
        return lambda key: False
    return getattr(getattr(scope.get("app"), "state", None), "ils_conf_flag", None) or (lambda key: False)


class DestructiveEndpointGuard:
    """ASGI middleware: 403 on the DESTRUCTIVE method + path prefixes unless the app conf allows them, and 400
    with the reason for an /infer request that MONAI Label would answer with a bare 500 (no image, params
    that are not a JSON object)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            path, method = scope.get("path", ""), scope.get("method", "")
            for prefix, refused, key in DESTRUCTIVE:
                if path.startswith(prefix) and method in refused and not _current_conf_flag(scope)(key):
                    response = JSONResponse(status_code=403, content={
                        "detail": f"{method} {prefix}... is disabled in this app; start it with --conf {key} true to "
                                  "allow it (and enable authentication)."})
                    await response(scope, receive, send)
                    return
            if method == "POST" and path.startswith("/infer/"):
                body, replay = await _buffered(receive)
                problem = await _infer_request_problem(scope, body)
                if problem is not None:
                    await JSONResponse(status_code=400, content={"detail": problem})(scope, replay, send)
                    return
                receive = replay
        await self.app(scope, receive, send)


async def _buffered(receive):
    """The whole request body, and a ``receive`` that hands it on again."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), [False]

    async def replay():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _infer_request_problem(scope, body: bytes) -> str | None:
    """Why MONAI Label's /infer would fail on this request with a bare 500, else None: no image, params not a JSON object."""
    import json

    from starlette.requests import Request

    async def once():
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(scope, once)
    try:
        form = await request.form()
    except Exception as err:  # noqa: BLE001 - a body that is not a form is MONAI Label's to answer
        return f"The request body is not a form ({type(err).__name__}); send params as a form field."
    params = form.get("params")
    has_file = getattr(form.get("file"), "filename", None) is not None
    if not request.query_params.get("image") and not has_file and not request.query_params.get("session_id"):
        return "No image given: pass a datastore image id (?image=<id>) or upload a file (form field 'file')."
    if params not in (None, ""):
        try:
            value = json.loads(params)
        except ValueError as err:
            return f"Form field 'params' is not valid JSON ({err.msg} at character {err.pos}); send a JSON object such as {{\"instruction\": \"...\"}}."
        if not isinstance(value, dict):
            return f"Form field 'params' must be a JSON object, got a JSON {type(value).__name__}."
    return None


def guard_endpoints(app, conf_flag) -> None:
    """Put `DestructiveEndpointGuard` in front of MONAI Label's FastAPI app (once); ``conf_flag(key)`` decides."""
    from starlette.middleware import Middleware

    app.state.ils_conf_flag = conf_flag
    if any(getattr(m.cls, "__name__", "") == DestructiveEndpointGuard.__name__ for m in app.user_middleware):
        return
    app.user_middleware.insert(0, Middleware(DestructiveEndpointGuard))
    app.middleware_stack = None  # the server has started: Starlette rebuilds the stack on the next request


class UploadRegistry:
    """Temporary upload files accepted as image ids: each only once (by the request that wrote it), fresh, ours.

    MONAI Label writes an upload to ``<tmp>/tmpXXXX<suffix>`` and passes its path as the image id; a client can
    pass such a path itself. A path is accepted the first time it is seen when it was written in the last
    ``max_age_s`` seconds by this process's user; every later use is refused, and the file is removed when
    its request ends, whatever the outcome.
    """

    def __init__(self, max_age_s: float = 120.0):
        self.max_age_s = float(max_age_s)
        self._claimed: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, image: str) -> bool:
        path = Path(image)
        try:
            stat = path.lstat()
        except OSError:
            return False
        if path.is_symlink() or not path.is_file() or path.parent.resolve() != Path(tempfile.gettempdir()).resolve():
            return False
        if not path.name.startswith("tmp") or stat.st_uid != os.getuid() or time.time() - stat.st_mtime > self.max_age_s:
            return False
        with self._lock:
            if str(path) in self._claimed:
                return False
            self._claimed.add(str(path))
        return True

    @staticmethod
    def remove(image: str) -> None:
        try:
            Path(image).unlink(missing_ok=True)
        except OSError:
            pass

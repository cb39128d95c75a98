"""MONAI Label's ASGI app with our chest X-ray OHIF viewer mounted at ``/viewer/``.

MONAI Label's bundled OHIF (``/ohif/``) cannot show a CR/DX (its mode needs CT/MR and volume viewports)
and its static route cannot be pointed elsewhere, so this module adds the viewer ``make viewer`` assembles,
on the same origin as the API and the DICOMweb proxy (``/proxy/dicom/...``)::

    monailabel start_server --app apps/ils_label --studies http://127.0.0.1:8042/dicom-web \\
        --host 127.0.0.1 --uvicorn_app apps.ils_label.serve:app

(run from the repository root, so that ``apps.ils_label.serve`` is importable), then open
``http://127.0.0.1:8000/viewer/``. Every MONAI Label route (``/info``, ``/infer``, ``/ohif``, ...) is
unchanged: clients such as ``monailabel.client`` or 3D Slicer see the same server.

``ILS_VIEWER_DIR`` overrides the viewer folder (default: ``viewer/dist`` beside this file); it must have
been built for the ``/viewer/`` base (``make viewer`` does that).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi.responses import PlainTextResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from monailabel.app import app

logger = logging.getLogger(__name__)

VIEWER_PATH = "/viewer"
DEFAULT_VIEWER_DIR = Path(__file__).resolve().parent / "viewer" / "dist"


class SinglePageApp(StaticFiles):
    """Static files where a path that names no file (an OHIF route such as ``/viewer/ils-cxr?...``) gets
    ``index.html``, so the viewer's own router handles it; missing assets (with an extension) stay 404."""

    async def get_response(self, path, scope):
        try:
            return await super().get_response(path, scope)
        except StarletteHTTPException as err:
            if err.status_code != 404 or "." in path.rsplit("/", 1)[-1]:
                raise
            return await super().get_response("index.html", scope)


def viewer_dir() -> Path:
    return Path(os.environ.get("ILS_VIEWER_DIR") or DEFAULT_VIEWER_DIR)


def mount_viewer(asgi_app, directory: Path | None = None, path: str = VIEWER_PATH) -> bool:
    """Mount the built viewer on ``asgi_app`` at ``path``; without a build, ``path`` says how to make one."""
    directory = directory or viewer_dir()

    @asgi_app.get(path, include_in_schema=False)
    async def _viewer_root():
        return RedirectResponse(f"{path}/")

    if (directory / "index.html").is_file():
        asgi_app.mount(path, SinglePageApp(directory=str(directory), html=True), name="ils-viewer")
        logger.info("Chest X-ray viewer served at %s/", path)
        return True

    message = f"The chest X-ray viewer is not built ({directory.name}/index.html is missing): run 'make viewer' in the repository."
    logger.warning(message)

    @asgi_app.get(path + "/{rest:path}", include_in_schema=False)
    async def _viewer_missing(rest: str = ""):
        return PlainTextResponse(message, status_code=503)

    return False


mount_viewer(app)

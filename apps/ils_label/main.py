"""MONAI Label app for instruction-guided lesion segmentation (ILS) of chest X-rays.

Infer tasks:

* ``rosalia``: ROSALIA answers an instruction ("Segment the effusion in the left lung base.") with a mask
  (the label) and a text answer (JSON result ``answer``); weights from ``--conf rosalia_path``.
* ``grounding``: the MIMIC-ILS grounding of a report (``report`` param) on the image, one label per lesion
  type, for reviewers who accept or correct generated masks.

Start it with ``monailabel start_server --host 127.0.0.1 --app apps/ils_label --studies <folder or DICOMweb URL> --conf
rosalia_path <checkpoint>``; see README.md beside this file.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import time
import sys
import tempfile
from pathlib import Path

import lib.configs
from fastapi import HTTPException

import monai_ils
from monai_ils import vocab
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException

from lib.configs.common import conf_bool
from lib.dicom_output import DicomOutputs, dicomweb_saver, install_dicom_seg_route
from lib.errors import BadRequest, ModelUnavailable, NotFound, RequestError
from lib.security import UploadRegistry, describe_request, drop_text_logging, guard_endpoints

logger = logging.getLogger(__name__)

TASKS = {"rosalia": lib.configs.Rosalia, "grounding": lib.configs.Grounding}
DICOM_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
CXR_EXTENSIONS = ("*.dcm", "*.dicom", "*.png", "*.jpg", "*.jpeg")


class MyApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.model_dir = os.path.join(app_dir, "model")
        names = [n.strip() for n in str(conf.get("models", "all")).split(",") if n.strip()] or ["all"]
        unknown = [n for n in names if n != "all" and n not in TASKS]
        if unknown:
            raise ValueError(f"App conf 'models': unknown model(s) {unknown}; available: all, {', '.join(TASKS)}.")
        self.models = {}
        for name, config_class in TASKS.items():
            if "all" in names or name in names:
                config = config_class()
                config.init(name, self.model_dir, conf, None)
                self.models[name] = config
        logger.info("+++ Using models: %s", list(self.models))
        drop_text_logging()  # MONAI Label's request dumps hold report and instruction text; /logs serves them
        self.uploads = UploadRegistry()
        self._guard_endpoints(conf)
        self.dicom_outputs = DicomOutputs()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="MONAI-ILS: instruction-guided lesion segmentation of chest X-rays",
            description="ROSALIA answers segmentation instructions; 'grounding' shows the masks dataset generation makes from a report.",
            version=getattr(monai_ils, "__version__", "0"),
        )
        if "monailabel.app" in sys.modules:  # served: output=dicom_seg is answered by our highdicom SEG
            install_dicom_seg_route(sys.modules["monailabel.app"].app)

    @staticmethod
    def _guard_endpoints(conf) -> None:
        """Model upload/delete and datastore writes answer 403 unless the conf allows them (see docs/label.md)."""
        try:
            from monailabel.app import app as fastapi_app
        except ImportError:  # the app built outside MONAI Label's server (e.g. a script): no endpoints to guard
            return
        guard_endpoints(fastapi_app, lambda key: conf_bool(conf, key, False))

    # ------------------------------------------------------------------ datastore
    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        extensions = list(dict.fromkeys([*settings.MONAI_LABEL_DATASTORE_FILE_EXT, *CXR_EXTENSIONS]))
        logger.info("Init local datastore for %s (extensions %s)", self.studies, extensions)
        return LocalDatastore(
            self.studies,
            extensions=extensions,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def _init_dicomweb_datastore(self) -> Datastore:
        """MONAI Label's DICOMweb datastore, handing tasks the cached series folder rather than a NIfTI.

        Its NIfTI conversion drops the DICOM header LoadCXR reads (photometric interpretation, bits
        stored, view position), so it is off unless ``--conf dicomweb_convert_to_nifti true``.
        """
        datastore = super()._init_dicomweb_datastore()
        if hasattr(datastore, "_convert_to_nifti"):
            datastore._convert_to_nifti = conf_bool(self.conf, "dicomweb_convert_to_nifti", False)
        datastore.__class__ = dicomweb_saver(self.dicom_outputs)  # final saves: highdicom SEG (+SR) by STOW-RS
        return datastore

    def _download_dcmqi_tools(self):
        """No dcmqi: DICOM SEG (infer output and saved labels) is built with highdicom (lib/dicom_output.py)."""

    # ------------------------------------------------------------------ tasks
    def init_infers(self):
        infers = {}
        for name, config in self.models.items():
            task = config.infer()
            for key, value in (task if isinstance(task, dict) else {name: task}).items():
                logger.info("+++ Adding inferer: %s => %s", key, value)
                infers[key] = value
        return infers

    def init_trainers(self):
        return {}

    def info(self):
        meta = super().info()
        unavailable = {name: task.unavailable_reason() for name, task in self._infers.items() if not task.is_valid()}
        meta["unavailable"] = unavailable
        meta["lesion_types"] = list(vocab.LESION_TYPES)  # the viewer names a ROSALIA mask by the lesion its instruction names
        if unavailable:
            meta["description"] += " NOT READY: " + " ".join(unavailable.values())
        return meta

    # ------------------------------------------------------------------ requests
    def infer(self, request, datastore=None):
        """MONAI Label's infer with checked inputs; bad requests become 4xx answers with a message.

        The log line holds ids, sizes and timings, never the report, instruction or answer text; this request's
        own upload is removed when it ends, whatever the outcome.
        """
        start = time.monotonic()
        upload = None
        status = 200
        try:
            image = request.get("image")
            if isinstance(image, str) and Path(image).is_absolute() and self.uploads.claim(image):
                upload = image
            return self._checked_infer(request, datastore, upload)
        except RequestError as err:
            status = err.status
            logger.warning("Refused infer request (%s): %s", err.status, err.message)
            raise HTTPException(status_code=err.status, detail=err.message) from err
        except HTTPException as err:
            status = err.status_code
            raise
        except MONAILabelException as err:
            status = 400 if err.error == MONAILabelError.INVALID_INPUT else 500
            raise HTTPException(status_code=status, detail=err.msg) from err
        except concurrent.futures.TimeoutError as err:
            status = 504
            raise HTTPException(status_code=504, detail=f"Inference took longer than {settings.MONAI_LABEL_INFER_TIMEOUT} s.") from err
        except Exception as err:
            status = 500
            logger.error("Inference failed: %s", type(err).__name__)  # no message: it may quote the request's text
            raise HTTPException(status_code=500, detail=f"Inference failed: {type(err).__name__}: {err}") from err
        finally:
            if upload is not None:
                self.uploads.remove(upload)
            logger.info("infer %s -> %s in %.2f s", describe_request(request), status, time.monotonic() - start)

    def _checked_infer(self, request, datastore=None, upload=None):
        model = request.get("model")
        task = self._infers.get(model)
        if task is None:
            raise NotFound(f"Unknown model {model!r}; this app serves {sorted(self._infers)} (see /info).")
        if not task.is_valid():
            raise ModelUnavailable(task.unavailable_reason())
        request = dict(request)
        datastore = datastore or self.datastore()
        image_id = request["image"] = upload or self.check_image_id(request.get("image"), datastore)
        uploaded = os.path.isabs(image_id)
        request["image_id"] = "upload" if uploaded else image_id  # the id the user knows (MONAI Label swaps in a path)
        uri = image_id if uploaded else datastore.get_image_uri(image_id)
        self.dicom_outputs.before_infer(uri)
        result = super().infer(request, datastore)
        return self.dicom_outputs.after_infer(model, image_id, uri, result, datastore_id=not uploaded)

    @staticmethod
    def check_image_id(image, datastore: Datastore) -> str:
        """A datastore image id; anything else (a server path, another request's upload) is refused.

        MONAI Label would read any existing server path given as ``image``, and joins DICOMweb ids onto
        its cache folder, so ids with path separators, a leading dot or unknown names never get that far.
        The request's own upload is accepted before this check (``UploadRegistry``).
        """
        if not isinstance(image, str) or not image.strip():
            raise BadRequest("No image given: pass a datastore image id (?image=<id>) or upload a file.")
        if Path(image).is_absolute():
            raise BadRequest(f"Image id {image!r} is a server path; pass a datastore image id or upload the file.")
        if any(c in image for c in ("/", "\\", "\x00")) or image.startswith("."):
            raise BadRequest(f"Image id {image!r} is not valid: an id names a datastore image and has no path separators or leading dot.")
        if isinstance(datastore, DICOMWebDatastore):
            if not DICOM_UID.match(image) or len(image) > 64:
                raise BadRequest(f"Image id {image!r} is not a DICOM SeriesInstanceUID.")
            return image
        if image not in datastore.list_images():
            raise NotFound(f"Image {image!r} is not in the datastore; GET /datastore/?output=all lists the image ids.")
        MyApp._check_inside_studies(image, datastore)
        return image

    @staticmethod
    def _check_inside_studies(image: str, datastore: Datastore) -> None:
        """A local datastore file (or a link) that resolves outside the studies folder is refused."""
        if not isinstance(datastore, LocalDatastore):
            return
        root = Path(datastore._datastore_path).resolve()  # MONAI Label 0.8.5 keeps it private
        target = Path(datastore.get_image_uri(image)).resolve()
        if root not in target.parents:
            raise BadRequest(f"Image {image!r} is a link to a file outside the studies folder; copy the file into the folder instead.")

"""DICOM outputs of the app, built with ``monai_ils.dicom`` (highdicom), not MONAI Label's dcmqi converter.

* ``/infer/<task>?output=dicom_seg`` answers with a DICOM SEG of the task's label map over the request's
  DICOM image (``application/dicom``): :func:`install_dicom_seg_route` puts a route ahead of MONAI Label's
  ``/infer/{model}`` that hands every other output to the stock endpoint unchanged.
* With a DICOMweb datastore, saving a ``final`` label stores a SEG of the saved label map, plus the
  TID 1500 SR of the report's findings for the ``grounding`` task, on the server through STOW-RS
  (:class:`DICOMwebSaver`). Each save is a new series, so a corrected label never collides with an earlier one.

Segments are coded from the task's result: ``grounding`` keeps one segment per grounded finding (the
label of its lesion type, as the reviewer left it; a label the reviewer added becomes its own finding),
``rosalia`` one segment for the lesion type and locations its instruction names. A single-frame CR/DX gets
the geometry OHIF's segmentation mode overlays (``monai_ils.dicom.geometry``).
"""
# no ``from __future__ import annotations``: FastAPI reads the route's annotations at run time, and its
# types are imported inside install_dicom_seg_route

import contextvars
import logging
import os
import pathlib
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from threading import Lock

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from monai_ils import vocab
from lib.errors import BadRequest, RequestError, Unprocessable

logger = logging.getLogger(__name__)

DICOM_SEG_REQUESTED = contextvars.ContextVar("dicom_seg_requested", default=False)
MAX_REMEMBERED = 256  # results kept for saving (image ids), oldest dropped first


def read_label_map(path) -> np.ndarray:
    """A saved 2-D label map (PNG, NRRD, NIfTI) as (rows, columns); MONAI's readers give 2-D images as (x, y)."""
    from monai.transforms import LoadImage

    array = np.asarray(LoadImage(image_only=True)(str(path)))
    array = np.squeeze(array)
    if array.ndim != 2:
        raise BadRequest(f"Label {pathlib.Path(path).name} is not a 2-D label map (shape {array.shape}).")
    return np.ascontiguousarray(array.T).astype(np.int64)


def read_source_dicom(image_uri) -> Dataset:
    """The DICOM instance behind a datastore image (file, or the one-instance series folder)."""
    from lib.transforms.inputs import ResolveCXR
    from monai_ils.dicom import read_source

    path = ResolveCXR()(image_uri)
    source = read_source(path)  # header and pixels: highdicom copies the source's modules it needs
    if source is None:
        raise BadRequest(f"Image {pathlib.Path(path).name} is not DICOM: a DICOM SEG needs the DICOM image it refers to.")
    return source


def _finding(lesion, mask, locations=(), **kwargs):
    from monai_ils.generation.findings import GroundedFinding

    return GroundedFinding(lesion, reported_location=list(locations), grounded_location=list(locations), mask=mask, **kwargs)


def grounding_findings(label_map: np.ndarray, result: Mapping):
    """The grounding result's findings with the masks of ``label_map`` (ids of ``vocab.LESION_LABEL_IDS``)."""
    from monai_ils.generation.findings import GroundedFinding

    names = {i: name for name, i in vocab.LESION_LABEL_IDS.items()}
    findings, used = [], set()
    for entry in result.get("findings", []):
        label = entry.get("label")
        mask = (label_map == label) if label else None
        used.add(label)
        findings.append(GroundedFinding(
            entry.get("reported_lesion"), presence=entry.get("presence", "positive"), certainty=entry.get("certainty", "definitive"),
            reported_location=list(entry.get("reported_location") or []), grounded_location=list(entry.get("grounded_location") or []),
            mask=mask, predicted_lesion_type=entry.get("lesion"), entity=entry.get("entity"), sentence_index=entry.get("sentence_index")))
    for label in sorted(int(v) for v in np.unique(label_map) if v and int(v) not in used):
        if label not in names:
            raise BadRequest(f"Label id {label} is not a lesion label of 'grounding' ({vocab.LESION_LABEL_IDS}).")
        findings.append(_finding(names[label], label_map == label))  # painted by the reviewer
    return findings


def rosalia_findings(label_map: np.ndarray, result: Mapping):
    """One finding: the lesion type and locations the instruction names, the mask label 1."""
    from monai_ils.data.templates import parse_instruction

    parsed = parse_instruction(str(result.get("instruction", "")))
    lesion = (parsed.variables.get("target") if parsed else None) or ""
    if lesion not in vocab.LESION_TYPES:
        raise Unprocessable(f"A DICOM SEG codes its segment by lesion type; the instruction names none of {list(vocab.LESION_TYPES)}.")
    locations = [loc for loc in (parsed.variables.get("location") or []) if loc in vocab.ANATOMY_LABELS]
    return [_finding(lesion, label_map == 1, locations)]


def _fresh_uids(ds: Dataset) -> None:
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def build_outputs(model: str, source: Dataset, label_map: np.ndarray, result: Mapping, with_sr: bool = False) -> dict[str, Dataset]:
    """``{"seg": ...}`` (and ``"sr"`` for grounding when ``with_sr``) for one task result on ``source``."""
    from monai_ils.dicom import build_measurement_report, build_segmentation

    shape = (int(source.Rows), int(source.Columns))
    if label_map.shape != shape:
        raise BadRequest(f"The label map is {label_map.shape[0]} x {label_map.shape[1]}, the image {shape[0]} x {shape[1]} (rows x columns).")
    if model == "grounding":
        findings = grounding_findings(label_map, result)
    elif model == "rosalia":
        findings = rosalia_findings(label_map, result)
    else:
        raise BadRequest(f"No DICOM output for model {model!r}.")
    key = str(source.SOPInstanceUID)
    backends = {"task": model}
    seg, segments = build_segmentation(source, findings, key, backends, require_location=model != "grounding")
    if seg is None:
        raise Unprocessable("Nothing was segmented: a DICOM SEG needs at least one non-empty segment.")
    _fresh_uids(seg)
    out = {"seg": seg}
    if with_sr and model == "grounding":
        sr = build_measurement_report(source, findings, key, seg, segments, result.get("sentences"), result.get("ctr"))
        _fresh_uids(sr)
        out["sr"] = sr
    return out


class ResultLog:
    """The last result of each task per image id, so that a save can code its segments (bounded, thread-safe)."""

    def __init__(self, size: int = MAX_REMEMBERED):
        self.size = size
        self._items: OrderedDict[str, tuple[str, dict]] = OrderedDict()
        self._lock = Lock()

    def record(self, image_id: str, model: str, result: Mapping) -> None:
        with self._lock:
            self._items.pop(image_id, None)
            self._items[image_id] = (model, dict(result))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def last(self, image_id: str) -> tuple[str, dict] | None:
        with self._lock:
            return self._items.get(image_id)


class DicomOutputs:
    """What ``MyApp`` calls after each inference: remember the result; answer ``output=dicom_seg`` with a SEG."""

    def __init__(self):
        self.results = ResultLog()

    def before_infer(self, image_uri: str) -> None:
        """Refuse ``output=dicom_seg`` for a non-DICOM image before any model runs."""
        if DICOM_SEG_REQUESTED.get():
            read_source_dicom(image_uri)

    def after_infer(self, model: str, image_id: str, image_uri: str, result: dict, datastore_id: bool) -> dict:
        params = result.get("params") or {}
        if datastore_id:
            self.results.record(image_id, model, params)
        if not DICOM_SEG_REQUESTED.get():
            return result
        label_file = result.get("file") or result.get("label")
        try:
            source = read_source_dicom(image_uri)
            seg = build_outputs(model, source, read_label_map(label_file), params)["seg"]
        finally:
            if label_file and os.path.isfile(label_file):
                os.unlink(label_file)
        handle, path = tempfile.mkstemp(suffix=".seg.dcm")
        os.close(handle)
        seg.save_as(path, write_like_original=False)
        return {**result, "file": path, "label": path}


def install_dicom_seg_route(app) -> None:
    """Serve ``POST /infer/{model}?output=dicom_seg`` with our SEG; every other request goes to MONAI Label's endpoint."""
    from fastapi import BackgroundTasks, Depends, File, Form, UploadFile
    from fastapi.responses import FileResponse
    from fastapi.routing import APIRoute
    from monailabel.config import settings
    from monailabel.endpoints.infer import ResultType, run_inference
    from monailabel.endpoints.user.auth import RBAC, User

    # an app reloaded in the same process (MONAI Label re-imports lib/) replaces the route of its predecessor,
    # whose DICOM_SEG_REQUESTED is another module's
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "name", "") != "ils_infer"]

    def ils_infer(background_tasks: BackgroundTasks, model: str, image: str = "", session_id: str = "", params: str = Form("{}"),
                  file: UploadFile = File(None), label: UploadFile = File(None), output: ResultType | None = None,
                  user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
        if output != ResultType.dicom_seg:
            return run_inference(background_tasks, model, image, session_id, params, file, label, output)
        token = DICOM_SEG_REQUESTED.set(True)
        try:  # the stock endpoint answers with result["file"], which after_infer made the SEG
            response = run_inference(background_tasks, model, image, session_id, params, file, label, ResultType.image)
        finally:
            DICOM_SEG_REQUESTED.reset(token)
        return FileResponse(response.path, media_type="application/dicom", filename="seg.dcm")

    app.router.routes.insert(0, APIRoute("/infer/{model}", ils_infer, methods=["POST"], name="ils_infer", tags=["Infer"],
                                         summary="Run Inference (output=dicom_seg: a DICOM SEG built with highdicom)"))


def store_on_save(datastore, outputs: DicomOutputs, image_id: str, label_filename: str, label_info: Mapping) -> dict:
    """STOW-RS the SEG (+ SR for grounding) of a final label; returns what the label's info records."""
    from monailabel.datastore.utils.convert import binary_to_image

    remembered = outputs.results.last(image_id)
    if remembered is None:
        raise BadRequest(f"No inference result for image {image_id!r} on this server: run a task on it before saving, "
                         "the DICOM SEG codes its segments from that result.")
    model, result = remembered
    converted = None
    if str(label_filename).endswith(".bin"):  # OHIF's raw label buffer
        label_filename = converted = binary_to_image(datastore.get_image_uri(image_id), label_filename)
    try:
        source = read_source_dicom(datastore.get_image_uri(image_id))
        datasets = build_outputs(model, source, read_label_map(label_filename), result, with_sr=True)
    finally:
        if converted:
            os.unlink(converted)
    answer = datastore._client.store_instances(datasets=list(datasets.values()))
    failed = answer.get("FailedSOPSequence") if answer is not None else None
    if failed:
        raise RuntimeError(f"The DICOMweb server refused {len(failed)} of {len(datasets)} instances (SEG/SR) for image {image_id!r}.")
    logger.info("Stored %s for image %s via STOW-RS", "+".join(k.upper() for k in datasets), image_id)
    info = {f"{kind}_series_instance_uid": str(ds.SeriesInstanceUID) for kind, ds in datasets.items()}
    info.update(model=model, SeriesInstanceUID=str(datasets["seg"].SeriesInstanceUID), Modality=str(source.get("Modality", "")),
                PatientID=str(source.get("PatientID", "")), StudyInstanceUID=str(source.StudyInstanceUID))
    return info


def dicomweb_saver(outputs: DicomOutputs):
    """A DICOMweb datastore class whose final saves go through :func:`store_on_save` instead of dcmqi."""
    from fastapi import HTTPException
    from monailabel.datastore.dicom import DICOMWebDatastore
    from monailabel.datastore.local import LocalDatastore
    from monailabel.interfaces.datastore import DefaultLabelTag

    class DICOMwebSaver(DICOMWebDatastore):
        def save_label(self, image_id, label_filename, label_tag, label_info, label_id=""):
            label_info = dict(label_info or {})
            if label_tag == DefaultLabelTag.FINAL:
                try:
                    label_info.update(store_on_save(self, outputs, image_id, label_filename, label_info))
                except RequestError as err:  # the save endpoint answers it with its status, not a 500
                    raise HTTPException(status_code=err.status, detail=err.message) from err
                if image_id not in self._datastore.objects:
                    # no NIfTI copy in the cache (dicomweb_convert_to_nifti off): the stored SEG series is the
                    # label, as MONAI Label's DICOMweb datastore lists final labels
                    return label_info["SeriesInstanceUID"]
            return LocalDatastore.save_label(self, image_id, label_filename, label_tag, label_info)

    return DICOMwebSaver

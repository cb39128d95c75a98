"""One study's DICOM outputs on disk: ``<folder>/seg.dcm`` and ``sr.dcm`` (and ``image.dcm``, the new
Secondary Capture, when the input image was not DICOM). Files are written through a temporary name and
renamed, and every UID is derived from the study, so a rerun rewrites identical objects."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydicom.dataset import Dataset

from monai_ils import vocab
from monai_ils.dicom.seg import build_segmentation
from monai_ils.dicom.source import NO_ORIGINAL_NOTE, read_source, secondary_capture
from monai_ils.dicom.sr import build_measurement_report
from monai_ils.generation.findings import StudyGrounding

SEG_NAME, SR_NAME, IMAGE_NAME = "seg.dcm", "sr.dcm", "image.dcm"


def build_study_dicom(grounding: StudyGrounding, source: Dataset | None = None, backends: Mapping[str, str] | None = None,
                      ctr_bands=vocab.CTR_SEVERITY_BANDS) -> dict[str, Dataset]:
    """``{"seg": ..., "sr": ..., "image": ...}`` datasets for one study (``seg`` absent when nothing was
    grounded, ``image`` only when ``source`` is None and a Secondary Capture had to be made)."""
    out: dict[str, Dataset] = {}
    notes: list[str] = []
    if source is None:
        if grounding.image is None:
            raise ValueError(f"study {grounding.study_key!r}: the image is not DICOM and the grounding carries no "
                             f"image (keep_image=True) to make a Secondary Capture from.")
        source = secondary_capture(grounding.image, grounding.study_key)
        out["image"] = source
        notes.append(NO_ORIGINAL_NOTE)
    seg, segments = build_segmentation(source, grounding.findings, grounding.study_key, backends, notes)
    if seg is not None:
        out["seg"] = seg
    out["sr"] = build_measurement_report(source, grounding.findings, grounding.study_key, seg, segments,
                                         grounding.sentences, grounding.ctr, ctr_bands, notes)
    return out


def _write(ds: Dataset, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ds.save_as(str(tmp), write_like_original=False)
    tmp.replace(path)


def export_study_dicom(grounding: StudyGrounding, folder, source_path=None, backends: Mapping[str, str] | None = None,
                       ctr_bands=vocab.CTR_SEVERITY_BANDS) -> dict[str, str]:
    """Write one study's SEG/SR (and SC) into ``folder``; returns ``{"seg": name, ...}`` relative to it.

    ``source_path`` defaults to the grounding's ``image_path``; a non-DICOM file gives a new study.
    """
    source = read_source(source_path or grounding.image_path)
    datasets = build_study_dicom(grounding, source, backends, ctr_bands)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = {"seg": SEG_NAME, "sr": SR_NAME, "image": IMAGE_NAME}
    for kind, ds in datasets.items():
        _write(ds, folder / names[kind])
    for kind, name in names.items():  # a rerun that grounds nothing must not keep an old SEG
        if kind not in datasets:
            (folder / name).unlink(missing_ok=True)
    return {kind: names[kind] for kind in datasets}


class DicomExporter:
    """``(record_key, grounding) -> files`` for the generation processor: writes ``<root>/<study>/...``.

    Args:
        root: the ``dicom`` folder of the dataset.
        backends: names of the cue/structurer backends, recorded in the SEG's algorithm identification.
        ctr_bands: ``(name, upper bound)`` CTR severity bands (default ``vocab.CTR_SEVERITY_BANDS``).
    """

    def __init__(self, root, backends: Mapping[str, str] | None = None, ctr_bands=vocab.CTR_SEVERITY_BANDS):
        self.root = Path(root)
        self.backends = dict(backends or {})
        self.ctr_bands = tuple(tuple(b) for b in ctr_bands)
        vocab.ctr_severity(0.0, self.ctr_bands)  # checks the bands now, not at the first study

    def folder(self, study_key: str) -> Path:
        from monai_ils.generation.pairs import mask_folder_name

        return self.root / mask_folder_name(study_key)

    def __call__(self, grounding: StudyGrounding) -> dict[str, str]:
        folder = self.folder(grounding.study_key)
        files = export_study_dicom(grounding, folder, backends=self.backends, ctr_bands=self.ctr_bands)
        return {kind: str(Path(self.root.name) / folder.name / name) for kind, name in files.items()}

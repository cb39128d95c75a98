"""Batch inference over a dataset: PNG masks and one JSONL record per instruction, resumable.

Output folder::

    predictions.jsonl        one record per instruction (id, image, instruction, text, mask path ...)
    masks/<split>/<study>/<n>.png   predicted mask at the image's size, foreground 255
    errors.jsonl             requests that failed (the run goes on without them)

A rerun skips the ids already in ``predictions.jsonl``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monai_ils.data.ils_format import ILSSample, read_ils_json, save_mask_png
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monai_ils.inference.predictor import Prediction, RosaliaPredictor

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
ERRORS_FILE = "errors.jsonl"


@dataclass
class Request:
    """One instruction on one image, with a stable id (for requests that are not dataset samples)."""

    id: str
    image_path: str
    instruction: str
    extra: dict = field(default_factory=dict)


def sample_ids(samples: Sequence[ILSSample]) -> list[str]:
    """Stable ids ``split/study_key/n`` (n counts the pairs of a study in reading order)."""
    counts: dict[tuple[str, str], int] = {}
    ids = []
    for s in samples:
        n = counts.get((s.split, s.study_key), 0)
        counts[(s.split, s.study_key)] = n + 1
        ids.append(f"{s.split}/{s.study_key}/{n}")
    return ids


def requests_from_samples(samples: Sequence[ILSSample]) -> list[Request]:
    return [
        Request(i, s.image_path, s.instruction, {"question_type": s.question_type, "target": s.target, "positive": s.positive})
        for i, s in zip(sample_ids(samples), samples)
    ]


def read_requests(path) -> list[Request]:
    """Requests from a JSON list or JSONL of ``{"image": ..., "instruction": ..., "id": optional}``.

    Relative image paths are resolved against the file's folder.
    """
    path = Path(path)
    text = path.read_text()
    try:
        records = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON/JSONL ({err}).") from err
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of requests.")
    requests = []
    for n, record in enumerate(records):
        if not isinstance(record, dict) or not record.get("image") or not record.get("instruction"):
            raise ValueError(f"{path}: request {n} needs 'image' and 'instruction', got {record!r}.")
        image = Path(record["image"])
        image = image if image.is_absolute() else path.parent / image
        extra = {k: v for k, v in record.items() if k not in ("id", "image", "instruction")}
        requests.append(Request(str(record.get("id", n)), str(image), record["instruction"], extra))
    return requests


def load_inputs(dataset_json=None, requests_file=None, splits=None, image_root=None, limit: int | None = None):
    """(samples or None, requests) from a dataset JSON or a requests file (exactly one of them)."""
    if (dataset_json is None) == (requests_file is None):
        raise ValueError("Give exactly one of dataset_json and requests_file.")
    if dataset_json is not None:
        if isinstance(splits, str):
            splits = [splits]
        samples = read_ils_json(dataset_json, splits=splits, image_root=image_root)
        if not samples:
            raise ValueError(f"{dataset_json}: no samples in split(s) {splits}.")
        samples = samples[:limit] if limit else samples
        return samples, requests_from_samples(samples)
    requests = read_requests(requests_file)
    return None, (requests[:limit] if limit else requests)


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", part) or "_"


def mask_relpath(request_id: str) -> str:
    return "masks/" + "/".join(_safe(p) for p in request_id.split("/")) + ".png"


def read_predictions(output_dir) -> dict[str, dict]:
    """Records of ``predictions.jsonl`` by id (later lines win); an empty dict when absent."""
    path = Path(output_dir) / PREDICTIONS_FILE
    records: dict[str, dict] = {}
    if not path.exists():
        return records
    with path.open() as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s:%d: unreadable line skipped (interrupted write?).", path, number)
                continue
            records[record["id"]] = record
    return records


def run_inference(
    predictor: RosaliaPredictor,
    requests: Sequence[Request],
    output_dir,
    mode: str | None = None,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Predict every request, writing masks and ``predictions.jsonl`` as it goes; returns the JSONL path.

    Requests of one image should be adjacent (dataset order already is), so each image is encoded once.
    A request that fails (unreadable image ...) is written to ``errors.jsonl`` and skipped.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    mode = mode or predictor.mode
    done = set(read_predictions(output_dir)) if resume else set()
    todo = [r for r in requests if r.id not in done]
    path = output_dir / PREDICTIONS_FILE
    if not resume:
        for stale in (path, output_dir / ERRORS_FILE):
            stale.unlink(missing_ok=True)
    _end_with_newline(path)  # a run killed mid-line must not glue its partial line to the next record
    if len(todo) < len(requests):
        logger.info("run_inference: %d of %d requests already done in %s.", len(requests) - len(todo), len(requests), output_dir)
    bar = _progress(len(todo), progress)
    with path.open("a") as stream, (output_dir / ERRORS_FILE).open("a") as errors:
        for chunk in _image_groups(todo, predictor.batch_size):
            try:
                predictions = list(predictor.predict_requests([(r.image_path, r.instruction) for r in chunk], mode=mode))
            except (OSError, ValueError) as err:
                predictions = _one_by_one(predictor, chunk, mode, errors, err)
            for request, prediction in zip(chunk, predictions):
                if prediction is None:
                    continue
                stream.write(json.dumps(_record(request, prediction, output_dir)) + "\n")
            stream.flush()
            bar.update(len(chunk))
    bar.close()
    return path


def _end_with_newline(path: Path) -> None:
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb+") as stream:
            stream.seek(-1, 2)
            if stream.read(1) != b"\n":
                stream.write(b"\n")


def _one_by_one(predictor, chunk, mode, errors, first_error):
    """Retry a failed batch request by request so that one bad image costs only its own requests."""
    logger.warning("A batch failed (%s); retrying its %d requests one at a time.", first_error, len(chunk))
    out: list[Prediction | None] = []
    for request in chunk:
        try:
            out.append(predictor.predict(request.image_path, request.instruction, mode=mode))
        except (OSError, ValueError) as err:
            logger.error("Request %s failed: %s", request.id, err)
            errors.write(json.dumps({"id": request.id, "image_path": request.image_path, "instruction": request.instruction, "error": str(err)}) + "\n")
            out.append(None)
    return out


def _image_groups(requests: Sequence[Request], batch_size: int) -> Iterable[list[Request]]:
    """Consecutive chunks of at most ``batch_size`` requests (each written as soon as it is done)."""
    for start in range(0, len(requests), batch_size):
        yield list(requests[start : start + batch_size])


def _record(request: Request, prediction: Prediction, output_dir: Path) -> dict:
    rel = mask_relpath(request.id)
    save_mask_png(prediction.mask, output_dir / rel)
    return {
        "id": request.id,
        "image_path": request.image_path,
        "instruction": request.instruction,
        "mode": prediction.mode,
        "text": prediction.text,
        "mask_path": rel,
        "mask_area": int(prediction.mask.sum()),
        "n_seg": prediction.n_seg,
        "empty_reason": prediction.empty_reason,
        **request.extra,
    }


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="inference", unit="instr", disable=not enabled)


class InferenceRunner:
    """Bundle entry point of ``inference.json``: read inputs, predict, write the predictions folder."""

    def __init__(
        self,
        predictor: RosaliaPredictor,
        output_dir,
        dataset_json=None,
        requests_file=None,
        splits=None,
        image_root=None,
        mode: str | None = None,
        resume: bool = True,
        limit: int | None = None,
        progress: bool = True,
    ) -> None:
        self.predictor = predictor
        self.output_dir = Path(output_dir)
        self.inputs = dict(dataset_json=dataset_json, requests_file=requests_file, splits=splits, image_root=image_root, limit=limit)
        self.mode = mode
        self.resume = resume
        self.progress = progress

    def run(self) -> Path:
        _, requests = load_inputs(**self.inputs)
        path = run_inference(self.predictor, requests, self.output_dir, self.mode, self.resume, self.progress)
        logger.info("Predictions written to %s (cache: %s).", path, self.predictor.cache_stats())
        return path

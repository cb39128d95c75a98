"""Send exported DICOM files to a PACS through DICOMweb STOW-RS (dicomweb-client).

``python -m monai_ils.dicom.stow --url http://pacs:8042/dicom-web outputs/ils_generation/dicom`` stores
every ``.dcm`` under the folder, study by study (one request per study folder), and prints one line per
study: how many instances were stored and how many the server refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import pydicom

logger = logging.getLogger(__name__)


def study_folders(root) -> list[Path]:
    """``root`` itself when it holds ``.dcm`` files, else its sub-folders that do, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    if any(root.glob("*.dcm")):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.dcm")))


def store_files(client, paths: Iterable[Path]) -> tuple[int, int]:
    """STOW-RS the files in one request; returns (stored, failed) from the server's answer."""
    datasets = [pydicom.dcmread(str(p)) for p in paths]
    if not datasets:
        return 0, 0
    answer = client.store_instances(datasets=datasets)
    stored = len(answer.get("ReferencedSOPSequence") or [])
    failed = len(answer.get("FailedSOPSequence") or [])
    return stored, failed


def store_folder(url: str, root, client=None) -> dict[str, tuple[int, int]]:
    """Store every study folder under ``root`` at the DICOMweb service ``url``; ``{folder: (stored, failed)}``.

    The image a SEG refers to (the original CR, or the ``image.dcm`` made for PNG input) must be on the
    server too for a viewer to overlay it; ``image.dcm`` is sent with its study.
    """
    if client is None:
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=url)
    # the image first, then the SEG, then the SR: each references the ones before
    order = {"image.dcm": 0, "seg.dcm": 1, "sr.dcm": 2}
    results = {}
    for folder in study_folders(root):
        files = sorted(folder.glob("*.dcm"), key=lambda p: (order.get(p.name, 3), p.name))
        results[folder.name] = store_files(client, files)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_ils.dicom.stow", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a dicom/ folder written by the generation bundle, or one study's folder")
    parser.add_argument("--url", required=True, help="DICOMweb root, e.g. http://localhost:8042/dicom-web")
    args = parser.parse_args(argv)
    results = store_folder(args.url, args.folder)
    failed = 0
    for name, (stored, refused) in results.items():
        print(f"{name}: {stored} stored, {refused} refused")
        failed += refused
    if not results:
        print(f"no .dcm files under {args.folder}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

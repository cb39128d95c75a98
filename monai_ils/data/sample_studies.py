"""The bundled sample study: the real RG1_UNCR.dcm (from the PyPI package ``pydicom-data``, not copied here)
with a short report we wrote describing what it shows (``monai_ils/data/sample/RG1_UNCR.txt``).

``sample_study_records()`` feeds the generation bundle's default run; ``sample_study_csv()`` writes a CSV
of many studies made from the one image with varied reports, for benchmarks and tests.
"""

from __future__ import annotations

import csv
from pathlib import Path

from monai_ils.data.mimic_cxr import StudyRecord
from monai_ils.data.sample import sample_cxr_path

SAMPLE_DIR = Path(__file__).with_name("sample")
SAMPLE_REPORT = SAMPLE_DIR / "RG1_UNCR.txt"

VARIED_REPORTS: tuple[str, ...] = (
    "FINDINGS: Multiple rounded opacities in both lungs, most numerous in the right mid and lower zones. No pleural effusion.",
    "FINDINGS: Rounded opacity in the left mid zone. No pneumothorax. Heart size is normal.",
    "FINDINGS: Right lower lobe consolidation, concerning for pneumonia. No pleural effusion.",
    "FINDINGS: Bibasilar opacities, likely atelectasis. The heart is normal in size.",
    "FINDINGS: Mild pulmonary edema. Small bilateral pleural effusions.",
    "FINDINGS: The lungs are clear. No pleural effusion or pneumothorax. No pneumonia.",
    "IMPRESSION: Opacity in the right upper zone may represent pneumonia.",
    "FINDINGS: Patchy opacity at the left lung base. No focal consolidation elsewhere.",
)


def sample_study_records(split: str = "train") -> list[StudyRecord]:
    """The one sample study (PA view), as the runner consumes it."""
    return [
        StudyRecord(
            key="RG1_UNCR",
            image_path=str(sample_cxr_path()),
            split=split,
            report_path=str(SAMPLE_REPORT),
            view_position="PA",
        )
    ]


def sample_study_csv(folder, n: int = 200, reports=VARIED_REPORTS, include_sample_report: bool = True) -> Path:
    """Write ``folder/studies.csv``: ``n`` studies on RG1_UNCR.dcm, reports cycling through ``reports``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts = ([SAMPLE_REPORT.read_text()] if include_sample_report else []) + list(reports)
    path = folder / "studies.csv"
    image = str(sample_cxr_path())
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["study_id", "image", "report", "split", "view_position"])
        for i in range(n):
            split = "test" if i % 10 == 9 else "val" if i % 10 == 8 else "train"  # 80/10/10
            writer.writerow([f"sample{i:05d}", image, texts[i % len(texts)], split, "PA"])
    return path

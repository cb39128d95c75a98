"""Dataset statistics in the shape of the paper's Tables 9-11 (and a Fig. 4-style bar chart).

Counts per split of lesion x question type x positive/negative. A pair is counted under its ``target``
(the lesion it is about): a tentative pneumonia's "Segment the opacity in ..." counts as pneumonia, as in
the paper, where basic and lesion-inference positives of pneumonia, atelectasis and edema are equal;
lesion-inference negatives ("There is no opacity in ...") count as opacity.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from monai_ils.data.ils_format import ILSSample
from monai_ils.vocab import LESION_ABBREVIATIONS, LESION_TYPES, QUESTION_TYPES

COLUMNS: tuple[tuple[str, str], ...] = tuple((q, o) for q in QUESTION_TYPES for o in ("pos", "neg"))
"""(question type, pos/neg) in the column order of Tables 9-11."""

OTHER_ROW = "other"
_HEADER = {"basic": "Basic", "global": "Global", "lesion_inference": "Lesion Inference"}


class DatasetStatistics:
    """Counts that grow one sample at a time: memory is independent of the dataset size."""

    def __init__(self):
        self.counts: Counter = Counter()

    @classmethod
    def from_samples(cls, samples: Iterable[ILSSample]) -> DatasetStatistics:
        stats = cls()
        stats.update(samples)
        return stats

    def add(self, sample: ILSSample) -> None:
        lesion = (sample.target or "").strip().lower()
        if lesion not in LESION_TYPES:
            lesion = OTHER_ROW
        question_type = sample.question_type if sample.question_type in QUESTION_TYPES else OTHER_ROW
        self.counts[(sample.split, lesion, question_type, "pos" if sample.positive else "neg")] += 1

    def update(self, samples: Iterable[ILSSample]) -> DatasetStatistics:
        for sample in samples:
            self.add(sample)
        return self

    def merge(self, other: DatasetStatistics) -> DatasetStatistics:
        self.counts.update(other.counts)
        return self

    # ------------------------------------------------------------------------------------------
    @property
    def splits(self) -> list[str]:
        order = {"train": 0, "val": 1, "validate": 1, "test": 2}
        return sorted({k[0] for k in self.counts}, key=lambda s: (order.get(s, 3), s))

    def rows(self, split: str) -> list[str]:
        present = {k[1] for k in self.counts if k[0] == split}
        return [*LESION_TYPES, *([OTHER_ROW] if OTHER_ROW in present else [])]

    def count(self, split: str, lesion: str | None = None, question_type: str | None = None, outcome: str | None = None) -> int:
        """Sum of counts matching the given keys (None matches everything)."""
        return sum(
            n
            for (s, l, q, o), n in self.counts.items()
            if s == split and lesion in (None, l) and question_type in (None, q) and outcome in (None, o)
        )

    def table(self, split: str) -> list[dict]:
        """Rows of one split: lesion, n_pairs, basic_pos ... lesion_inference_neg, then a Total row."""
        out = []
        for lesion in [*self.rows(split), "Total"]:
            key = None if lesion == "Total" else lesion
            row = {"split": split, "lesion": lesion, "n_pairs": self.count(split, key)}
            for question_type, outcome in COLUMNS:
                row[f"{question_type}_{outcome}"] = self.count(split, key, question_type, outcome)
            out.append(row)
        return out

    # ------------------------------------------------------------------------------------------
    def to_csv(self, path=None) -> str:
        """All splits as one CSV (columns: split, lesion, n_pairs, basic_pos, ..., lesion_inference_neg)."""
        buffer = io.StringIO()
        names = ["split", "lesion", "n_pairs", *(f"{q}_{o}" for q, o in COLUMNS)]
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for split in self.splits:
            writer.writerows(self.table(split))
        text = buffer.getvalue()
        if path is not None:
            _write(path, text)
        return text

    def to_markdown(self, path=None) -> str:
        """One Markdown table per split, laid out like Tables 9-11."""
        parts = []
        for split in self.splits:
            header = "| Lesion | # IAs | " + " | ".join(f"{_HEADER[q]} {o}" for q, o in COLUMNS) + " |"
            rule = "|---|" + "---:|" * (1 + len(COLUMNS))
            lines = [f"### {split}", "", header, rule]
            for row in self.table(split):
                lesion = f"**{row['lesion']}**" if row["lesion"] == "Total" else row["lesion"]
                values = [f"{row['n_pairs']:,}", *(f"{row[f'{q}_{o}']:,}" for q, o in COLUMNS)]
                lines.append(f"| {lesion} | " + " | ".join(values) + " |")
            parts.append("\n".join(lines))
        text = "\n\n".join(parts) + "\n"
        if path is not None:
            _write(path, text)
        return text

    def plot(self, path) -> Path:
        """A bar chart per split (x: lesion, y: pairs) stacked by question type and outcome; PNG via Agg."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        splits = self.splits or ["(empty)"]
        figure = Figure(figsize=(5.5 * len(splits), 4.2), layout="constrained")
        axes = figure.subplots(1, len(splits), squeeze=False)[0]
        colours = {("basic", "pos"): "#1f77b4", ("basic", "neg"): "#aec7e8", ("global", "pos"): "#ff7f0e",
                   ("global", "neg"): "#ffbb78", ("lesion_inference", "pos"): "#2ca02c", ("lesion_inference", "neg"): "#98df8a"}
        for axis, split in zip(axes, splits):
            lesions = list(LESION_TYPES)
            bottoms = [0] * len(lesions)
            for question_type, outcome in COLUMNS:
                heights = [self.count(split, lesion, question_type, outcome) for lesion in lesions]
                axis.bar(range(len(lesions)), heights, bottom=bottoms, color=colours[(question_type, outcome)],
                         label=f"{_HEADER[question_type]} {outcome}")
                bottoms = [b + h for b, h in zip(bottoms, heights)]
            axis.set_xticks(range(len(lesions)))
            axis.set_xticklabels([LESION_ABBREVIATIONS[lesion] for lesion in lesions])
            axis.set_title(f"{split}: {self.count(split):,} pairs")
            axis.set_ylabel("pairs")
        axes[-1].legend(fontsize="small")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        return path

    def write(self, folder, stem: str = "statistics") -> dict[str, Path]:
        """CSV, Markdown and PNG side by side: ``<stem>.csv``, ``<stem>.md``, ``<stem>.png``."""
        folder = Path(folder)
        out = {"csv": folder / f"{stem}.csv", "markdown": folder / f"{stem}.md", "png": folder / f"{stem}.png"}
        self.to_csv(out["csv"])
        self.to_markdown(out["markdown"])
        self.plot(out["png"])
        return out


def _write(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


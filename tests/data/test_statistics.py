"""Tables 9-11 counts, their CSV/Markdown renderings and the bar chart."""

import csv
import io

from PIL import Image

from monai_ils.data.ils_format import ILSSample
from monai_ils.data.statistics import DatasetStatistics


def sample(split, target, question_type, positive):
    return ILSSample(split, "s", "i.png", "x", "y", target, positive, "m.png" if positive else None, question_type)


SAMPLES = [
    sample("train", "pneumonia", "basic", True),
    sample("train", "pneumonia", "lesion_inference", True),
    sample("train", "pneumonia", "basic", False),
    sample("train", "opacity", "lesion_inference", False),
    sample("train", "opacity", "basic", False),
    sample("train", "cardiomegaly", "global", True),
    sample("train", "cardiomegaly", "global", True),
    sample("test", "effusion", "global", False),
    sample("test", "nodule", "basic", True),
]


def test_counts_in_table_shape():
    stats = DatasetStatistics.from_samples(SAMPLES)
    assert stats.splits == ["train", "test"]
    rows = {r["lesion"]: r for r in stats.table("train")}
    assert list(rows) == ["cardiomegaly", "pneumonia", "atelectasis", "opacity", "consolidation", "edema", "effusion", "Total"]
    assert rows["pneumonia"] == {"split": "train", "lesion": "pneumonia", "n_pairs": 3, "basic_pos": 1, "basic_neg": 1, "global_pos": 0,
                                 "global_neg": 0, "lesion_inference_pos": 1, "lesion_inference_neg": 0}
    assert rows["opacity"]["lesion_inference_neg"] == 1 and rows["cardiomegaly"]["global_pos"] == 2
    assert rows["Total"]["n_pairs"] == 7 and rows["Total"]["basic_neg"] == 2
    test_rows = {r["lesion"]: r for r in stats.table("test")}
    assert test_rows["other"]["basic_pos"] == 1 and test_rows["Total"]["n_pairs"] == 2
    merged = DatasetStatistics.from_samples(SAMPLES[:3]).merge(DatasetStatistics.from_samples(SAMPLES[3:]))
    assert merged.counts == stats.counts


def test_csv_markdown_and_png(tmp_path):
    stats = DatasetStatistics.from_samples(SAMPLES)
    files = stats.write(tmp_path)
    rows = list(csv.DictReader(io.StringIO(files["csv"].read_text())))
    assert rows[0].keys() == {"split", "lesion", "n_pairs", "basic_pos", "basic_neg", "global_pos", "global_neg",
                              "lesion_inference_pos", "lesion_inference_neg"}
    assert len(rows) == 8 + 9  # train: 7 lesions + Total; test: 7 + other + Total
    total = [r for r in rows if r["split"] == "train" and r["lesion"] == "Total"][0]
    assert total["n_pairs"] == "7"
    markdown = files["markdown"].read_text()
    assert "### train" in markdown and "| Lesion | # IAs | Basic pos | Basic neg |" in markdown
    assert "| pneumonia | 3 | 1 | 1 | 0 | 0 | 1 | 0 |" in markdown
    with Image.open(files["png"]) as image:
        assert image.format == "PNG" and image.size[0] > 500

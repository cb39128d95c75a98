"""Study indexes on a tiny MIMIC-CXR tree with the real column names, a CSV and a folder."""

import csv
import gzip

import pytest

from monai_ils.data.mimic_cxr import CSVStudyIndex, FolderStudyIndex, MimicCXRIndex, StudyIndexError, study_index

META_COLUMNS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
                "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
                "PatientOrientationCodeSequence_CodeMeaning"]
IMAGES = [  # dicom_id, subject, study, view, split
    ("aaa-1", "10000032", "50414267", "PA", "train"),
    ("aaa-2", "10000032", "50414267", "LATERAL", "train"),
    ("bbb-1", "10000032", "53189527", "AP", "validate"),
    ("ccc-1", "11000011", "56699142", "AP", "test"),
    ("ccc-2", "11000011", "56699142", "PA", "test"),
]


def write_csv(path, columns, rows, gz=False):
    opener = (lambda p: gzip.open(p, "wt", newline="")) if gz else (lambda p: open(p, "w", newline=""))
    with opener(path) as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows(rows)


def mimic_tree(root, gz=False):
    suffix = ".gz" if gz else ""
    write_csv(root / f"mimic-cxr-2.0.0-metadata.csv{suffix}", META_COLUMNS,
              [[d, subj, st, "CHEST (PA AND LAT)", view, 3056, 2544, 21800506, 213014.531, "CHEST (PA AND LAT)", "postero-anterior", "Erect"]
               for d, subj, st, view, _ in IMAGES], gz)
    write_csv(root / f"mimic-cxr-2.0.0-split.csv{suffix}", ["dicom_id", "study_id", "subject_id", "split"],
              [[d, st, subj, split] for d, subj, st, _, split in IMAGES], gz)
    for d, subj, st, _, _ in IMAGES:
        folder = root / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{st}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{d}.dcm").write_bytes(b"")
        (folder.parent / f"s{st}.txt").write_text(f"FINDINGS: report of study {st}.")
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_mimic_index_frontal_views_official_split_and_paths(tmp_path, gz):
    index = MimicCXRIndex(mimic_tree(tmp_path, gz))
    records = list(index)
    assert [r.dicom_id for r in records] == ["aaa-1", "bbb-1", "ccc-1", "ccc-2"]  # the lateral is left out
    assert [r.split for r in records] == ["train", "val", "test", "test"]
    first = records[0]
    assert first.key == "s50414267_aaa-1" and first.view_position == "PA" and (first.rows, first.columns) == (3056, 2544)
    assert first.image_path == str(tmp_path / "files/p10/p10000032/s50414267/aaa-1.dcm")
    assert first.read_report() == "FINDINGS: report of study 50414267."
    assert len(index) == 4
    assert [r.dicom_id for r in MimicCXRIndex(tmp_path, views=None, splits=["validate", "test"])] == ["bbb-1", "ccc-1", "ccc-2"]
    assert [r.dicom_id for r in MimicCXRIndex(tmp_path, first_image_per_study=True)] == ["aaa-1", "bbb-1", "ccc-1"]
    assert isinstance(study_index(tmp_path), MimicCXRIndex)


def test_mimic_index_errors_name_file_and_row(tmp_path):
    mimic_tree(tmp_path)
    write_csv(tmp_path / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"],
              [[d, st, subj, split] for d, subj, st, _, split in IMAGES[:2]])
    records = list(MimicCXRIndex(tmp_path))  # the row without a split is that study's error, the others run
    assert [r.index_error for r in records] == [None, "mimic-cxr-2.0.0-metadata.csv row 4: dicom_id bbb-1 has no split in "
                                                "mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-metadata.csv row 5: dicom_id ccc-1 "
                                                "has no split in mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-metadata.csv row 6: "
                                                "dicom_id ccc-2 has no split in mimic-cxr-2.0.0-split.csv"]
    write_csv(tmp_path / "mimic-cxr-2.0.0-split.csv", ["dicom", "split"], [])
    with pytest.raises(StudyIndexError, match=r"missing column\(s\) \['dicom_id', 'study_id', 'subject_id'\]"):
        list(MimicCXRIndex(tmp_path))
    with pytest.raises(FileNotFoundError, match="mimic-cxr-2.0.0-metadata.csv"):
        MimicCXRIndex(tmp_path / "elsewhere")


def test_missing_report_is_an_error_naming_the_study(tmp_path):
    mimic_tree(tmp_path)
    (tmp_path / "files/p10/p10000032/s50414267.txt").unlink()
    record = next(iter(MimicCXRIndex(tmp_path)))
    with pytest.raises(FileNotFoundError, match="s50414267_aaa-1"):
        record.read_report()


def test_csv_index_text_or_file_reports_and_unique_keys(tmp_path):
    (tmp_path / "r.txt").write_text("Left effusion.")
    write_csv(tmp_path / "list.csv", ["Image", "report", "report_path", "split", "ViewPosition"], [
        ["img/a.png", "Right basal pneumonia.", "", "validate", "PA"],
        ["img/a.png", "", "r.txt", "", ""],
        ["/abs/c.dcm", "", "", "test", "AP"],
    ])
    records = list(CSVStudyIndex(tmp_path / "list.csv"))
    assert [r.key for r in records] == ["a", "a_2", "c"]
    assert [r.split for r in records] == ["val", "train", "test"]
    assert records[0].image_path == str(tmp_path / "img/a.png") and records[0].read_report() == "Right basal pneumonia."
    assert records[1].read_report() == "Left effusion." and records[1].view_position is None
    assert records[2].image_path == "/abs/c.dcm" and records[2].read_report() == ""  # empty: the runner records it
    assert [r.key for r in CSVStudyIndex(tmp_path / "list.csv", splits=["test"])] == ["c"]
    write_csv(tmp_path / "bad.csv", ["picture", "report"], [["x", "y"]])
    with pytest.raises(StudyIndexError, match="needs an 'image'"):
        list(CSVStudyIndex(tmp_path / "bad.csv"))
    assert isinstance(study_index(tmp_path / "list.csv"), CSVStudyIndex)


def test_folder_index(tmp_path):
    (tmp_path / "site1").mkdir()
    (tmp_path / "site1" / "x.dcm").write_bytes(b"")
    (tmp_path / "site1" / "x.txt").write_text("No acute process.")
    (tmp_path / "y.png").write_bytes(b"")
    (tmp_path / "notes.md").write_text("ignored")
    records = list(FolderStudyIndex(tmp_path, split="test"))
    assert [(r.key, r.split) for r in records] == [("site1_x", "test"), ("y", "test")]
    assert records[0].read_report() == "No acute process."
    with pytest.raises(FileNotFoundError, match="y.txt"):
        records[1].read_report()
    assert isinstance(study_index(tmp_path), FolderStudyIndex)


# ---------------------------------------------------------------------------------------------------
# unique keys (issue 15 item 2) and one bad row is that row's error (item 4)
# ---------------------------------------------------------------------------------------------------
def test_csv_duplicate_ids_get_keys_unique_also_as_mask_folders(tmp_path):
    write_csv(tmp_path / "list.csv", ["study_id", "image", "report"], [
        ["a", "1.dcm", "r"], ["a", "2.dcm", "r"], ["a_2", "3.dcm", "r"], ["a/2", "4.dcm", "r"], ["", "sub/a.dcm", "r"],
    ])
    keys = [r.key for r in CSVStudyIndex(tmp_path / "list.csv")]
    from monai_ils.generation.pairs import mask_folder_name

    assert keys == ["a", "a_2", "a_2_2", "a/2_3", "a_3"]  # "a/2_2" would share the folder a_2_2
    assert len({mask_folder_name(k) for k in keys}) == len(keys)


def test_csv_bad_rows_become_their_own_error_records(tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(b"study_id,image,report\n"
                     b"ok1,a.dcm,Right effusion.\n"
                     b"empty,,Left effusion.\n"
                     b"latin,b.dcm,Epanchement pleural \xe9tendu.\n"
                     b"ok2,c.dcm,No acute process.\n")
    index = CSVStudyIndex(path)
    assert len(index) == 4  # counting the index does not abort
    records = list(index)
    assert [r.key for r in records] == ["ok1", "empty", "latin", "ok2"]
    assert [r.index_error for r in records] == [
        None, "list.csv row 3: empty 'image' cell",
        "list.csv row 4: column 'report' is not valid UTF-8 (byte 0xe9 at character 20)", None]
    assert records[3].read_report() == "No acute process."


def test_runner_writes_a_bad_row_as_its_error_record_and_runs_the_rest(tmp_path):
    from monai_ils.generation.pairs import GeneratedPairs
    from monai_ils.generation.runner import GenerationRunner

    path = tmp_path / "list.csv"
    path.write_bytes(b"image,report\na.dcm,fine\n,no image\nb.dcm,bad \xff byte\nc.dcm,fine\n")
    seen = []

    def processor(record):
        seen.append(record.key)
        return GeneratedPairs(samples=[], masks={})

    summary = GenerationRunner(tmp_path / "out", processor, progress=False).run(CSVStudyIndex(path))
    assert seen == ["a", "b", "c"] or seen == ["a", "c"]
    assert (summary.studies, summary.ok, summary.errors) == (4, 2, 2)
    import json

    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert {e["error"]["message"] for e in errors} == {"list.csv row 3: empty 'image' cell",
                                                        "list.csv row 4: column 'report' is not valid UTF-8 (byte 0xff at character 4)"}
    assert {e["error"]["stage"] for e in errors} == {"index"}


def test_mimic_row_without_ids_is_its_error_record(tmp_path):
    mimic_tree(tmp_path)
    rows = [[d, subj, st, "", view, 1, 1, "", "", "", "", ""] for d, subj, st, view, _ in IMAGES]
    rows[0][2] = ""
    write_csv(tmp_path / "mimic-cxr-2.0.0-metadata.csv", META_COLUMNS, rows)
    records = list(MimicCXRIndex(tmp_path))
    assert records[0].index_error == "mimic-cxr-2.0.0-metadata.csv row 2: empty dicom_id, subject_id or study_id"
    assert [r.index_error for r in records[1:]] == [None, None, None]


@pytest.mark.parametrize("files, named", [
    (["x.dcm", "x.png", "x.txt"], "x.dcm and x.png"),
    (["sub/b.dcm", "sub_b.dcm"], "sub/b.dcm and sub_b.dcm"),
])
def test_folder_images_sharing_a_key_are_refused_at_indexing_named(tmp_path, files, named):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    index = FolderStudyIndex(tmp_path)
    with pytest.raises(StudyIndexError, match=f"1 study key\\(s\\) claimed by more than one image \\({named}\\)"):
        list(index)
    with pytest.raises(StudyIndexError):
        len(index)


def test_unknown_split_name_is_that_image_error_record_not_the_run_end(tmp_path):
    mimic_tree(tmp_path)
    rows = [[d, st, subj, "training" if d == "bbb-1" else split] for d, subj, st, _, split in IMAGES]
    write_csv(tmp_path / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], rows)
    records = list(MimicCXRIndex(tmp_path))
    assert [r.dicom_id for r in records if r.index_error is None] == ["aaa-1", "ccc-1", "ccc-2"]
    (bad,) = [r for r in records if r.index_error]
    assert bad.index_error == ("mimic-cxr-2.0.0-metadata.csv row 4: dicom_id bbb-1 has the unknown split 'training' in "
                               "mimic-cxr-2.0.0-split.csv row 4 (known: test, train, val, validate, validation)")


def test_csv_unknown_split_is_that_row_error_record_even_when_filtering_splits(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("image,report,split\na.dcm,Right effusion.,train\nb.dcm,Left effusion.,tarin\nc.dcm,No effusion.,test\n")
    records = list(CSVStudyIndex(path, splits=["test"]))
    assert [(r.key, r.index_error) for r in records] == [
        ("b", "list.csv row 3: unknown split 'tarin' (known: test, train, val, validate, validation)"), ("c", None)]
    assert records[1].split == "test"

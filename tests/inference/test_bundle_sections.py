"""inference.json / evaluate.json sections: network_def, preprocessing, postprocessing, protocols, one metric."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_ils.data.ils_format import save_mask_png
from monai_ils.inference.runner import load_inputs
from monai_ils.inference.transforms import ResizeToOriginald, SegLogitsToMaskd

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "rosalia" / "configs"


def _parser(name, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIGS / name)
    parser.update(overrides)
    return parser


def test_seg_logits_to_mask_hand_computed():
    logits = torch.tensor([[[1.0, -1.0], [-2.0, 0.0]], [[-1.0, -1.0], [0.5, -3.0]]])  # two [SEG]s
    out = SegLogitsToMaskd("pred", threshold=0.0)({"pred": logits, "original_size": (2, 2)})["pred"]
    assert out.tolist() == [[[True, False], [True, False]]]  # 0.0 is not above the threshold
    out = SegLogitsToMaskd("pred", threshold=0.7)({"pred": logits})["pred"]
    assert out.tolist() == [[[True, False], [False, False]]]
    empty = SegLogitsToMaskd("pred")({"pred": torch.zeros(0, 0, 0), "original_size": (3, 5)})["pred"]
    assert empty.shape == (1, 3, 5) and not empty.any()
    with pytest.raises(ValueError, match="n_seg, H, W"):
        SegLogitsToMaskd("pred")({"pred": torch.zeros(4, 4)})


def test_resize_to_original_nearest():
    mask = torch.tensor([[[True, False], [False, True]]])
    out = ResizeToOriginald("pred")({"pred": mask, "original_size": (4, 4)})["pred"]
    expected = np.kron(np.eye(2, dtype=bool), np.ones((2, 2), dtype=bool))
    assert out.shape == (1, 4, 4) and np.array_equal(np.asarray(out[0]), expected)
    same = ResizeToOriginald("pred")({"pred": mask, "original_size": (2, 2)})["pred"]
    assert same is mask
    with pytest.raises(KeyError, match="original_size"):
        ResizeToOriginald("pred")({"pred": mask})


@pytest.mark.parametrize("config", ["inference.json", "evaluate.json"])
def test_network_def_shapes_offline(config, tiny_model_dir, tiny_dataset):
    """The shape check of network_def (what verify_net_in_out would do, with ROSALIA's two inputs):
    preprocessing -> [1, H, W] uint8, network -> [n_seg, H, W] logits, postprocessing -> [1, H, W] bool."""
    parser = _parser(config, checkpoint_dir=str(tiny_model_dir), device="cpu", dataset_json=str(tiny_dataset))
    model, processor = parser.get_parsed_content("network_def")
    image_path = load_inputs(tiny_dataset, splits="test")[1][0].image_path
    h, w = np.asarray(Image.open(image_path)).shape
    image = parser.get_parsed_content("preprocessing")({"image": image_path})["image"]
    assert tuple(image.shape) == (1, h, w) and image.dtype == torch.uint8

    predictor = parser.get_parsed_content("predictor")
    assert predictor.model is model and predictor.processor is processor
    sam, clip, input_size, original = predictor.model_inputs(image_path)
    encoded = model.encode_images(sam[None], clip[None], [input_size], [original])
    prompt = processor.encode_prompt("Segment the edema.", answer_prefix="[SEG] [SEG]")
    logits = model.segment(encoded, [prompt])[0]
    assert tuple(logits.shape) == (2, h, w)
    mask = parser.get_parsed_content("postprocessing")({"pred": logits, "original_size": (h, w)})["pred"]
    assert tuple(mask.shape) == (1, h, w) and mask.dtype == torch.bool


def test_postprocessing_of_the_bundle_is_what_the_predictor_runs(tiny_model_dir, tiny_dataset):
    """Change the bundle's threshold: the predictor's masks follow it (the mask is exactly logits > threshold)."""
    image_path = load_inputs(tiny_dataset, splits="test")[1][0].image_path
    results = {}
    for threshold in (0.0, 1e9):
        parser = _parser("inference.json", checkpoint_dir=str(tiny_model_dir), device="cpu", mask_threshold=threshold, mode="segment")
        prediction = parser.get_parsed_content("predictor").predict(image_path, "Segment the edema.", return_logits=True)
        assert np.array_equal(prediction.mask, (prediction.mask_logits > threshold).any(0).numpy())
        results[threshold] = prediction
    assert results[0.0].mask.any() and not results[1e9].mask.any()
    assert results[1e9].empty_reason == "no_foreground"


def _write_predictions(folder, requests, masks, mode, texts=None):
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (request, mask) in enumerate(zip(requests, masks)):
        save_mask_png(mask, folder / "masks" / f"{request.id}.png")
        lines.append(json.dumps({"id": request.id, "mask_path": f"masks/{request.id}.png", "mode": mode,
                                 "text": None if texts is None else texts[i], "instruction": request.instruction}))
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("protocol,mode", [("teacher_forced", "segment"), ("end_to_end", "generate")])
def test_protocols_named_and_scores_hand_computed(protocol, mode, tiny_dataset, tmp_path):
    """Predictions written by hand; gIoU, cIoU and N-Acc known in advance; the protocol is in every title."""
    samples, requests = load_inputs(tiny_dataset, splits="test")
    masks, expected_iou, inter, union = [], [], 0, 0
    negatives_ok = []
    for n, sample in enumerate(samples):
        target = sample.load_mask(shape=np.asarray(Image.open(sample.image_path)).shape)
        if sample.positive:
            if n % 3 == 0:  # exact
                pred = target.copy()
            elif n % 3 == 1:  # left half of the target only
                pred = target.copy()
                pred[:, pred.shape[1] // 2 :] = False
            else:  # nothing
                pred = np.zeros_like(target)
            i, u = np.count_nonzero(pred & target), np.count_nonzero(pred | target)
            expected_iou.append(i / u)
            inter, union = inter + i, union + u
        else:
            pred = np.zeros_like(target)
            if n % 2:  # a false positive pixel
                pred[0, 0] = True
            negatives_ok.append(not pred.any())
        masks.append(pred)
    texts = [s.answer if k % 2 == 0 else "no idea" for k, s in enumerate(samples)] if mode == "generate" else None
    _write_predictions(tmp_path / "pred", requests, masks, mode, texts)
    parser = _parser("evaluate.json", run_inference=False, dataset_json=str(tiny_dataset), protocol=protocol,
                     predictions_dir=str(tmp_path / "pred"), output_dir=str(tmp_path / "eval"), num_overlays=0)
    assert parser.get_parsed_content("mode") == mode
    parser.get_parsed_content("run")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["protocol"] == protocol and summary["mode"] == mode
    assert summary["giou"] == pytest.approx(np.mean(expected_iou))
    assert summary["ciou"] == pytest.approx(inter / union)
    assert summary["nacc"] == pytest.approx(np.mean(negatives_ok)) and 0 < summary["nacc"] < 1
    results = (tmp_path / "eval" / "results.md").read_text()
    title = protocol.replace("_", "-") + " protocol"
    headings = [line for line in results.splitlines() if line.startswith("### ")]
    assert headings and all(title in line for line in headings)
    if mode == "generate":
        assert summary["text_accuracy"] == pytest.approx(np.mean([k % 2 == 0 for k in range(len(samples))]))
        assert len(headings) == 4
    else:
        assert summary["text_accuracy"] is None and len(headings) == 2


def test_mixed_modes_and_wrong_protocol_are_refused(tiny_dataset, tmp_path):
    from monai_ils.evaluation.runner import EvaluationRunner

    with pytest.raises(ValueError, match="Unknown evaluation protocol"):
        EvaluationRunner(tmp_path, tiny_dataset, protocol="teacher")
    with pytest.raises(ValueError, match="runs mode 'segment'"):
        EvaluationRunner(tmp_path, tiny_dataset, protocol="teacher_forced", mode="generate")

"""RosaliaPredictor on a tiny random ROSALIA saved to disk and loaded through the real loader."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from monai_ils.data.ils_format import load_mask_png
from monai_ils.inference import EmbeddingCache, RosaliaPredictor, image_key
from monai_ils.inference.runner import load_inputs, read_predictions, run_inference
from monai_ils.vocab import SEG_TOKEN

INSTRUCTIONS = [
    "Segment the pneumonia in the left lung.",
    "Segment the edema.",
    "Segment the opacity in the right lung base and left lung base and predict its type.",
]


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    return RosaliaPredictor.from_pretrained(tiny_model_dir, device="cpu", batch_size=4, max_new_tokens=6)


@pytest.fixture()
def image():
    return np.random.default_rng(1).integers(0, 255, (40, 52), dtype=np.uint8)


def test_segment_mode_matches_the_model_and_encodes_once(predictor, image):
    predictor.cache.clear()
    predictor.encoded_images = 0
    preds = predictor.predict_many(image, INSTRUCTIONS, mode="segment", return_logits=True)
    assert predictor.encoded_images == 1 and predictor.cache.hits == len(INSTRUCTIONS) - 1
    # the same forward pass done by hand, image by image, without the predictor
    model, proc = predictor.model, predictor.processor
    sam, size = proc.sam_image(image)
    enc = model.encode_images(sam[None], proc.vlm_image(image)[None], [size], [image.shape])
    for instruction, pred in zip(INSTRUCTIONS, preds):
        logits = model.segment(enc, [proc.encode_prompt(instruction, answer_prefix=SEG_TOKEN)])[0]
        assert pred.text is None and pred.n_seg == 1 and pred.mask.shape == image.shape
        torch.testing.assert_close(pred.mask_logits, logits.float(), atol=1e-4, rtol=1e-4)
        assert np.array_equal(pred.mask, (logits > 0).any(0).numpy())


def test_batched_generation_equals_one_at_a_time(predictor, image):
    batched = predictor.predict_many(image, INSTRUCTIONS, mode="generate", return_logits=True)
    single = RosaliaPredictor(predictor.model, predictor.processor, batch_size=1, max_new_tokens=6)
    for a, b in zip(batched, single.predict_many(image, INSTRUCTIONS, mode="generate", return_logits=True)):
        assert a.text == b.text and a.n_seg == b.n_seg
        assert isinstance(a.text, str) and a.text
        torch.testing.assert_close(a.mask_logits, b.mask_logits, atol=1e-4, rtol=1e-4)


def test_generate_is_greedy_and_its_masks_are_the_teacher_forced_ones(predictor, image):
    """Every generated token is the argmax of a teacher-forced pass over prompt + answer, and the masks
    of the generated [SEG]s are those of that pass (one SAM decode path)."""
    model, proc = predictor.model, predictor.processor
    enc = predictor.encode(image)
    prompt = proc.encode_prompt(INSTRUCTIONS[0])
    answer = model.generate(enc, [prompt], max_new_tokens=6)[0]
    full = torch.cat([prompt, answer["output_ids"]])
    out = model.forward(full[None], sam_embeddings=enc.sam_embeddings, vision_features=enc.vision_features,
                        input_sizes=enc.input_sizes, output_sizes=enc.original_sizes)
    n_image = enc.vision_features.shape[1]
    answer_logits = out.logits[0, len(prompt) - 1 + n_image - 1 : -1]  # positions that predict each answer token
    assert answer_logits.argmax(-1).tolist() == answer["output_ids"].tolist()
    torch.testing.assert_close(answer["mask_logits"], out.mask_logits[0])
    assert answer["mask_logits"].shape[0] == int((answer["output_ids"] == model.seg_token_id).sum())


def test_generation_options_reach_transformers_generate(predictor, image):
    beam = RosaliaPredictor(predictor.model, predictor.processor, max_new_tokens=6, generation_kwargs={"num_beams": 2})
    assert beam.predict(image, INSTRUCTIONS[0], mode="generate").text
    with pytest.raises(ValueError, match="num_return_sequences"):
        RosaliaPredictor(predictor.model, predictor.processor, generation_kwargs={"num_return_sequences": 2}).predict(
            image, INSTRUCTIONS[0], mode="generate")


def test_blank_masks_say_why(predictor, image):
    none = RosaliaPredictor(predictor.model, predictor.processor, max_new_tokens=1,
                            generation_kwargs={"suppress_tokens": [predictor.model.seg_token_id]})
    pred = none.predict(image, INSTRUCTIONS[0], mode="generate")
    assert pred.n_seg == 0 and pred.is_empty and pred.empty_reason == "no_seg_generated"
    high = RosaliaPredictor(predictor.model, predictor.processor, mask_threshold=1e9)
    pred = high.predict(image, INSTRUCTIONS[0], mode="segment")
    assert pred.n_seg == 1 and pred.is_empty and pred.empty_reason == "no_foreground"
    assert predictor.predict(image, INSTRUCTIONS[0], mode="segment").empty_reason in (None, "no_foreground")


def test_cache_is_keyed_by_pixels_and_path(tmp_path, image):
    other = image.copy()
    other[0, 0] ^= 1
    assert image_key(image) == image_key(image.copy()) != image_key(other)
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    key = image_key(path)
    assert key.startswith("path:") and key == image_key(str(path))
    cache = EmbeddingCache(max_items=2)
    for k in "abc":
        cache.put(k, object.__new__(type("E", (), {"__len__": lambda self: 1})))
    assert "a" not in cache and "b" in cache and "c" in cache  # least recently used went first
    with pytest.raises(ValueError, match="max_items"):
        EmbeddingCache(-1)


def test_without_cache_every_instruction_encodes(tiny_model_dir, predictor, image):
    uncached = RosaliaPredictor(predictor.model, predictor.processor, cache_size=0, batch_size=2)
    preds = uncached.predict_many(image, INSTRUCTIONS, mode="segment")
    assert uncached.encoded_images == len(INSTRUCTIONS) and len(uncached.cache) == 0
    cached = predictor.predict_many(image, INSTRUCTIONS, mode="segment")
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(preds, cached))


def test_bad_requests_are_reported(predictor, image, tmp_path):
    with pytest.raises(ValueError, match="Unknown inference mode"):
        predictor.predict(image, "Segment the edema.", mode="fast")
    with pytest.raises(ValueError, match="non-empty string"):
        predictor.predict(image, "  ")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        predictor.predict(tmp_path / "missing.png", "Segment the edema.")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RosaliaPredictor.from_pretrained(tmp_path / "nope")


def test_run_inference_resumes_and_records_failures(predictor, tiny_dataset, tmp_path):
    samples, requests = load_inputs(dataset_json=tiny_dataset, splits="test")
    out = tmp_path / "pred"
    run_inference(predictor, requests[:4], out, mode="segment", progress=False)
    with (out / "predictions.jsonl").open("a") as stream:  # a run killed in the middle of a line
        stream.write('{"id": "test/s9/0", "mask_pa')
    broken = type(requests[0])("broken/0", str(tmp_path / "gone.png"), "Segment the edema.")
    run_inference(predictor, requests + [broken], out, mode="segment", progress=False)
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert lines[4].startswith('{"id": "test/s9/0"')  # the partial line stays alone; readers skip it
    ids = [json.loads(line)["id"] for line in lines[:4] + lines[5:]]
    assert sorted(ids) == sorted(r.id for r in requests)  # each once, the broken one left out
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["broken/0"] and "gone.png" in errors[0]["error"]
    records = read_predictions(out)
    first = records[requests[0].id]
    mask = load_mask_png(out / first["mask_path"])
    assert mask.shape == np.asarray(Image.open(samples[0].image_path)).shape and int(mask.sum()) == first["mask_area"]

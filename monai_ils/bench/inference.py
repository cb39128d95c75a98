"""Benchmark ROSALIA inference: samples/s with and without the image-embedding cache.

    python -m monai_ils.bench.inference                        # small random model on CPU (GPU when present)
    python -m monai_ils.bench.inference --preset tiny          # the test-suite model
    python -m monai_ils.bench.inference --preset lisa7b        # LISA-7B shapes (Llama-7B, CLIP ViT-L/14, SAM ViT-H), CUDA only
    python -m monai_ils.bench.inference --checkpoint DIR       # a real checkpoint folder (any layout load_rosalia reads)

Both modes are timed: "segment" (answer forced to [SEG], no text) and "generate" (greedy text + masks).
Each image carries ``--instructions-per-image`` instructions, as in MIMIC-ILS. The projected time for the
12K-sample test set is compared with the paper (20 min segmentation only, 1.5 h with text, on the
authors' GPUs) and with the target of this project (at least 5x faster on one H100).

Random weights never stop early, so "generate" runs to ``--max-new-tokens`` (default 16, about the
length of the longest Table 2 answer): the figure is a fair stand-in for real answers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PAPER_SECONDS = {"segment": 20 * 60, "generate": 90 * 60}
PAPER_SAMPLES = 12_000
TARGET_SPEEDUP = 5.0

INSTRUCTIONS = (
    "Segment the pneumonia in the left lung.",
    "Segment the edema.",
    "Segment the opacity in the right lung base and left lung base and predict its type.",
    "Segment the effusion in the right lung.",
    "Segment the cardiomegaly.",
    "Segment the atelectasis in the right mid zone lung.",
    "Segment the consolidation in the left apical zone.",
)


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("tiny", "small", "lisa7b"), default="small", help="random model size when no --checkpoint")
    parser.add_argument("--checkpoint", default=None, help="local checkpoint folder instead of a random model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on CUDA")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--instructions-per-image", type=int, default=6)
    parser.add_argument("--image-size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--modes", nargs="+", default=["segment", "generate"], choices=("segment", "generate"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default on CPU: 1, so that figures are per core)")
    return parser.parse_args(argv)


def _small_sam():
    from monai_ils.models.sam import SamConfig
    from monai_ils.models.testing import TINY_SAM

    # a SAM whose encoder costs something (input 256 px, 4 blocks of width 192), as in the training benchmark
    return SamConfig(**{**TINY_SAM.to_dict(), "img_size": 256, "encoder_embed_dim": 192, "encoder_depth": 4, "encoder_num_heads": 3,
                        "encoder_global_attn_indexes": (3,), "window_size": 7})


def _random_model(preset: str, folder: Path, device: torch.device, dtype):
    """A random ROSALIA of the preset's shapes, saved and loaded through the real loader (except lisa7b)."""
    from monai_ils.models.checkpoint import load_pretrained, save_pretrained
    from monai_ils.models.rosalia import RosaliaModel
    from monai_ils.models.testing import build_tiny_rosalia, tiny_config, tiny_processor

    if preset == "tiny":
        build_tiny_rosalia(folder)
        return load_pretrained(folder, dtype=dtype, device=device)
    if preset == "small":
        processor = tiny_processor(sam_img_size=256)
        save_pretrained(RosaliaModel(tiny_config(processor, sam=_small_sam())), folder, processor)
        return load_pretrained(folder, dtype=dtype, device=device)
    # lisa7b: the published architecture with random weights, built directly on the GPU (28 GB in float32 on CPU)
    if device.type != "cuda":
        raise SystemExit("--preset lisa7b needs a CUDA device (the model is 7B parameters).")
    from monai_ils.models.rosalia import lisa_7b_config

    processor = tiny_processor(sam_img_size=1024, vision_size=224)  # a word-level tokenizer: ids fit the 32K vocabulary
    config = lisa_7b_config(seg_token_id=processor.seg_token_id)
    config.text_config.update(bos_token_id=processor.tokenizer.bos_token_id, eos_token_id=processor.tokenizer.eos_token_id)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype or torch.bfloat16)
    try:
        with torch.device(device):
            model = RosaliaModel(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval(), processor


def _images(count: int, size) -> list[Path]:
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="bench_images_"))
    paths = []
    from PIL import Image

    for i in range(count):
        path = folder / f"cxr{i}.png"
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _time(predictor, requests, mode, device) -> float:
    predictor.cache.clear()
    predictor.encoded_images = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in predictor.predict_requests(requests, mode=mode):
        pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    args = _parse(argv)
    from monai_ils.inference import RosaliaPredictor, resolve_device, resolve_dtype

    device = resolve_device(args.device)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)  # tiny ops spin when threads outnumber free cores
    dtype = resolve_dtype(args.dtype) or (torch.bfloat16 if device.type == "cuda" else None)
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            from monai_ils.models import load_rosalia

            model, processor = load_rosalia(args.checkpoint, dtype=dtype, device=device)
            label = f"checkpoint {args.checkpoint}"
        else:
            model, processor = _random_model(args.preset, Path(tmp) / "model", device, dtype)
            label = f"random '{args.preset}' model"
    # Only the 7B architecture (real or random weights) costs what the paper's model costs.
    comparable = bool(args.checkpoint) or args.preset == "lisa7b"
    images = _images(args.images, tuple(args.image_size))
    per_image = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(args.instructions_per_image)]
    requests = [(str(path), text) for path in images for text in per_image]
    n = len(requests)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"ROSALIA inference on {where}: {label}, {model.dtype}; {args.images} images x {args.instructions_per_image} instructions, "
          f"batch {args.batch_size}, images {tuple(args.image_size)}, SAM input {model.sam_img_size}")
    results: dict = {"device": where, "samples": n}
    for mode in args.modes:
        for cached in (True, False):
            predictor = RosaliaPredictor(model, processor, batch_size=args.batch_size, cache_size=64 if cached else 0,
                                         max_new_tokens=args.max_new_tokens)
            predictor.predict(str(images[0]), per_image[0], mode=mode)  # warm-up (allocations, kernels)
            seconds = _time(predictor, requests, mode, device)
            rate = n / seconds
            projected = PAPER_SAMPLES / rate
            key = f"{mode}_{'cache' if cached else 'nocache'}"
            results[key] = {"seconds": seconds, "samples_per_s": rate, "projected_12k_s": projected, "encoded_images": predictor.encoded_images}
            speedup = PAPER_SECONDS[mode] / projected
            versus = f" (paper {PAPER_SECONDS[mode] / 60:.0f} min: {speedup:.2f}x)" if comparable else " (not comparable with the paper: small model)"
            print(f"  {mode:8s} {'with' if cached else 'without':7s} cache: {rate:7.2f} samples/s, encoder runs {predictor.encoded_images:3d}, "
                  f"12K samples in {projected / 60:7.1f} min{versus}")
        saving = 1 - results[f"{mode}_cache"]["seconds"] / results[f"{mode}_nocache"]["seconds"]
        results[f"{mode}_cache_saving"] = saving
        print(f"  {mode}: the cache saves {saving * 100:.0f}% of the time; target on one H100: >= {TARGET_SPEEDUP:.0f}x the paper, "
              f"i.e. 12K samples in <= {PAPER_SECONDS[mode] / TARGET_SPEEDUP / 60:.0f} min ({PAPER_SAMPLES * TARGET_SPEEDUP / PAPER_SECONDS[mode]:.1f} samples/s)")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

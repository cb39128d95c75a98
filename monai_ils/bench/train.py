"""Benchmark a ROSALIA training step (DeepSpeed ZeRO-2 engine, LoRA) with and without the frozen-encoder cache.

    python -m monai_ils.bench.train                  # small random model, CPU (or the GPU when present)
    python -m monai_ils.bench.train --sam-img-size 1024 --steps 20

Prints samples/s, step time (data preparation + forward/backward/optimizer step), peak memory
(GPU: max allocated; CPU: peak RSS of the process) and the step-time saving of the cache.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--images", type=int, default=8, help="images in the synthetic dataset (2 pairs each)")
    parser.add_argument("--image-size", type=int, nargs=2, default=(384, 320), metavar=("H", "W"))
    parser.add_argument("--sam-img-size", type=int, default=256, help="SAM input size (1024 for the real SAM)")
    parser.add_argument("--sam-embed-dim", type=int, default=192)
    parser.add_argument("--sam-depth", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def _build(folder: Path, args):
    from monai_ils.models.checkpoint import load_pretrained, save_pretrained
    from monai_ils.models.rosalia import RosaliaModel
    from monai_ils.models.sam import SamConfig
    from monai_ils.models.testing import TINY_SAM, tiny_config, tiny_processor

    sam = SamConfig(
        **{
            **TINY_SAM.to_dict(),
            "img_size": args.sam_img_size,
            "encoder_embed_dim": args.sam_embed_dim,
            "encoder_depth": args.sam_depth,
            "encoder_num_heads": max(args.sam_embed_dim // 64, 1),
            "encoder_global_attn_indexes": tuple(range(args.sam_depth - 1, args.sam_depth)),
            "window_size": 7,
        }
    )
    processor = tiny_processor(sam_img_size=sam.img_size)
    model = RosaliaModel(tiny_config(processor, sam=sam))
    save_pretrained(model, folder, processor)
    return load_pretrained(folder)


def _measure(trainer, args, device) -> dict:
    trainer.dataset.set_epoch(0)
    loader = trainer.loader  # the bundle's train#dataloader (preprocessing, 1:1 sampler, collate)
    times, data_times = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    done = 0
    while done < args.warmup + args.steps:
        start = time.perf_counter()
        for batch in loader:
            loaded = time.perf_counter()
            trainer.train_step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            end = time.perf_counter()
            if done >= args.warmup:
                times.append(end - start)
                data_times.append(loaded - start)
            done += 1
            if done >= args.warmup + args.steps:
                break
            start = time.perf_counter()
    step = sum(times) / len(times)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_s": step, "data_s": sum(data_times) / len(data_times), "samples_per_s": args.batch_size / step, "peak_mib": peak}


def main(argv=None) -> dict:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from monai_ils.models.testing import write_tiny_ils_dataset
    from monai_ils.train.trainer import RosaliaTrainer

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_tiny_ils_dataset(tmp / "data", n_images=args.images, size=tuple(args.image_size))
        for mode in ("pixels", "cache"):
            model, processor = _build(tmp / f"model_{mode}", args)
            trainer = RosaliaTrainer(
                train_json=data, output_dir=tmp / f"run_{mode}", model=model, processor=processor, micro_batch_size=args.batch_size,
                max_steps=10_000, lora={"r": 8, "alpha": 16}, save_every=0, progress=False, use_cache=(mode == "cache"), resume=False,
            )
            start = time.perf_counter()
            trainer.setup()
            setup = time.perf_counter() - start
            results[mode] = {**_measure(trainer, args, device), "setup_s": setup}
            del trainer, model
    pixels, cache = results["pixels"], results["cache"]
    saving = 1.0 - cache["step_s"] / pixels["step_s"]
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"ROSALIA training step on {where}; batch {args.batch_size}, SAM input {args.sam_img_size}, images {tuple(args.image_size)}")
    for mode, r in results.items():
        memory = "peak GPU memory" if device.type == "cuda" else "peak RSS"
        print(
            f"  {mode:6s}: {r['samples_per_s']:.2f} samples/s, step {r['step_s'] * 1000:.0f} ms "
            f"(data {r['data_s'] * 1000:.0f} ms), {memory} {r['peak_mib']:.0f} MiB, setup {r['setup_s']:.1f} s"
        )
    print(f"  frozen-encoder cache saves {saving * 100:.0f}% of the step time (its setup includes the precompute; CPU peak RSS is for the whole process)")
    results["saving"] = saving
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

"""One prepared GPU check: the real-size ROSALIA and the neural cues, timed in a single run.

    python -m monai_ils.bench gpu --out DIR             # on one H100/H200 (about 8 minutes)
    python -m monai_ils.bench gpu --dry-run --out DIR   # the same code paths at tiny sizes on CPU (the test suite runs it)

Sections (each time-capped and independent: a failing or overrunning section records its error and the
next one runs): environment; inference at LISA-7B shapes (segmentation only and with text, with and
without the embedding cache, a few batch sizes); a training step (DeepSpeed ZeRO-2, torch_adam, LoRA
r128/alpha256, bf16, gradient checkpointing) from pixels and from the frozen-encoder cache; RadEdit,
CXAS, HybridGNet and YOLO at their real architecture sizes with random weights. Writes
``gpu_report.json`` and ``gpu_report.md`` (figures beside the paper's anchors and our targets).

The model, the trainer and each cue backend are built in one function each (``build_rosalia``,
``build_trainer``, ``build_radedit``, ...), so a change of model API is made in one place.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# The paper's anchors (samples/s on the authors' GPUs) and this project's targets on one H100/H200.
PAPER = {"segment": 12_000 / (20 * 60), "generate": 12_000 / (90 * 60), "train_per_gpu": 15 * 1_000_000 / (2.5 * 86_400) / 2}
TARGET = {"segment": 50.0, "generate": 12.0, "train_per_gpu": 2 * PAPER["train_per_gpu"]}


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real run and the dry run."""

    rosalia: str  # "lisa7b" or "tiny"
    images: int
    instructions_per_image: int
    batch_sizes: tuple[int, ...]
    max_new_tokens: int
    train_batch: int
    train_steps: int
    train_images: int
    radedit: str  # "real" or "tiny"
    radedit_size: int
    radedit_steps: int
    radedit_batches: tuple[int, ...]
    cxas_size: int
    hybridgnet_size: int
    yolo_cfg: str
    yolo_size: int
    cue_batches: tuple[int, ...]
    caps: dict = field(default_factory=dict)


REAL = Sizes(rosalia="lisa7b", images=4, instructions_per_image=8, batch_sizes=(1, 8, 32), max_new_tokens=16, train_batch=2, train_steps=3,
             train_images=4, radedit="real", radedit_size=512, radedit_steps=100, radedit_batches=(1, 8), cxas_size=512, hybridgnet_size=1024,
             yolo_cfg="yolov8x.yaml", yolo_size=1024, cue_batches=(1, 8),
             caps={"environment": 40, "inference": 120, "train": 140, "radedit": 100, "cxas": 25, "hybridgnet": 25, "yolo": 30})  # 480 s in all
DRY = Sizes(rosalia="tiny", images=2, instructions_per_image=2, batch_sizes=(1, 2), max_new_tokens=2, train_batch=1, train_steps=1,
            train_images=1, radedit="tiny", radedit_size=32, radedit_steps=2, radedit_batches=(1, 2), cxas_size=64, hybridgnet_size=64,
            yolo_cfg="yolov8n.yaml", yolo_size=64, cue_batches=(1,),
            caps={"environment": 30, "inference": 60, "train": 90, "radedit": 30, "cxas": 30, "hybridgnet": 30, "yolo": 60})


class SectionTimeout(Exception):
    pass


@contextlib.contextmanager
def time_cap(seconds: float):
    """Raise SectionTimeout in the main thread after ``seconds`` (checked between Python bytecodes)."""

    def expire(signum, frame):
        raise SectionTimeout(f"time cap of {seconds:g} s reached")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ builders
def build_rosalia(shapes: str, device: torch.device, dtype: torch.dtype):
    """A random ROSALIA of ``shapes`` ('lisa7b': Llama-7B + CLIP ViT-L/14-224 + SAM ViT-H; 'tiny': the test model).

    The inference benchmark's builder: the 7B weights are initialised on the GPU directly (the device and
    dtype as defaults, no 28 GB float32 copy on the host); the tiny model goes through the real save/load.
    Returns (model, processor).
    """
    from monai_ils.bench.inference import _random_model

    if shapes not in ("lisa7b", "tiny"):
        raise ValueError(f"unknown ROSALIA shapes {shapes!r}; expected 'lisa7b' or 'tiny'")
    with tempfile.TemporaryDirectory(prefix="rosalia_") as folder:
        model, processor = _random_model(shapes, Path(folder) / "model", device, dtype)
    return model.eval(), processor


def build_trainer(model, processor, data_json: Path, run_dir: Path, use_cache: bool, batch: int, bf16: bool):
    """The production trainer as LISA trains the 7B model: ZeRO-2 (torch_adam), LoRA r128/alpha256, gradient checkpointing."""
    from monai_ils.train.trainer import RosaliaTrainer

    return RosaliaTrainer(train_json=data_json, output_dir=run_dir, model=model, processor=processor, micro_batch_size=batch, max_steps=10_000,
                          lora={"r": 128, "alpha": 256}, save_every=0, progress=False, use_cache=use_cache, resume=False, bf16=bf16,
                          gradient_checkpointing=True, export_merged_model=False)


def _radedit_modules(kind: str):
    """UNet, VAE and text-encoder modules with RadEdit's configurations ('real') or the test's tiny ones."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import BertConfig, BertModel

    if kind == "real":
        # A Stable-Diffusion UNet at 64x64 latents conditioned on 768-wide CXR-BERT states; the SDXL VAE; BERT-base.
        unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, cross_attention_dim=768)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=1024, scaling_factor=0.13025)
        text = BertModel(BertConfig(), add_pooling_layer=False)
    else:
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                    cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            block_out_channels=(8, 16), latent_channels=4, norm_num_groups=8, sample_size=32, scaling_factor=0.13025)
        text = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, max_position_embeddings=128),
                         add_pooling_layer=False)
    return unet, vae, text


def build_radedit(folder: Path, sizes: Sizes, device: torch.device, dtype: torch.dtype):
    """Random RadEdit weights saved in the published folder layout, loaded by the production backend."""
    from transformers import BertTokenizer

    from monai_ils.cues.base import get_backend

    with torch.device(device):
        unet, vae, text = _radedit_modules(sizes.radedit)
    for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        module.to(dtype).save_pretrained(folder / name)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "acute", "cardio", "##pulmonary", "process"]
    (folder / "text_encoder" / "vocab.txt").write_text("\n".join(words))
    BertTokenizer(str(folder / "text_encoder" / "vocab.txt")).save_pretrained(folder / "text_encoder")
    del unet, vae, text
    _release(device)
    return get_backend("counterfactual", "radedit", unet=folder / "unet", vae=folder / "vae", text_encoder=folder / "text_encoder",
                       num_inference_steps=sizes.radedit_steps, size=sizes.radedit_size, device=str(device), dtype=dtype)


def build_cxas(device: torch.device, dtype: torch.dtype):
    """CXAS's UNet-ResNet50 (159 classes) with random weights."""
    from monai_ils.cues.cxas import CXASUNet

    with torch.device(device):
        return CXASUNet().to(dtype).eval()


def build_hybridgnet(size: int, device: torch.device, dtype: torch.dtype):
    """HybridGNet2IGSC at ``size`` with random weights."""
    from monai_ils.cues.hybridgnet import HybridGNet

    with torch.device(device):
        return HybridGNet(input_size=size).to(dtype).eval()


def build_yolo(folder: Path, cfg: str, imgsz: int, device: torch.device):
    """A random ultralytics detector of ``cfg`` with the VinBigData classes, saved as ultralytics does, loaded by the backend."""
    from monai_ils import vocab
    from monai_ils.cues.base import get_backend
    from monai_ils.cues.yolo import prepare_offline_ultralytics

    folder.mkdir(parents=True, exist_ok=True)
    prepare_offline_ultralytics(folder / "config")
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(cfg, nc=len(vocab.VINBIG_CLASSES), verbose=False)
    model.names = dict(enumerate(vocab.VINBIG_CLASSES))
    path = folder / f"vinbig_{Path(cfg).stem}.pt"
    torch.save({"model": model.half(), "ema": None, "train_args": {"task": "detect", "imgsz": imgsz}, "version": "8", "date": None}, path)
    device_name = "cuda:0" if device.type == "cuda" else "cpu"
    return get_backend("boxes", "yolo", weights=path, imgsz=imgsz, device=device_name, config_dir=folder / "config")


# ------------------------------------------------------------------------------------------ sections
def section_environment(ctx) -> dict:
    device = ctx.device
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_runtime": torch.version.cuda, "device": str(device)}
    for name in ("transformers", "peft", "accelerate", "deepspeed", "diffusers", "ultralytics", "monai", "segment_anything", "pydicom"):
        try:
            info[name] = getattr(__import__(name), "__version__", "installed")
        except Exception as exc:  # recorded: a missing carried wheel shows here first
            info[name] = f"missing ({type(exc).__name__})"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
                    capability=f"{props.major}.{props.minor}")
        with contextlib.suppress(Exception):
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                            text=True, timeout=10).stdout.strip()
    return info


def section_inference(ctx) -> dict:
    from monai_ils.bench.inference import INSTRUCTIONS, _images, _time
    from monai_ils.inference import RosaliaPredictor

    s, device = ctx.sizes, ctx.device
    model, processor = build_rosalia(s.rosalia, device, ctx.dtype)
    images = _images(s.images, (512, 512))
    per_image = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(s.instructions_per_image)]
    requests = [(str(p), text) for p in images for text in per_image]
    out = {"samples": len(requests), "max_new_tokens": s.max_new_tokens, "params_b": sum(p.numel() for p in model.parameters()) / 1e9, "runs": []}
    ctx.partial = out
    for mode in ("segment", "generate"):
        for batch in s.batch_sizes:
            for cached in (True, False):
                predictor = RosaliaPredictor(model, processor, batch_size=batch, cache_size=64 if cached else 0, max_new_tokens=s.max_new_tokens)
                predictor.predict(str(images[0]), per_image[0], mode=mode)  # warm-up
                _reset_peak(device)
                seconds = _time(predictor, requests, mode, device)
                out["runs"].append({"mode": mode, "batch": batch, "cache": cached, "samples_per_s": len(requests) / seconds,
                                    "encoder_runs": predictor.encoded_images, "peak_mib": _peak_mib(device)})
    del model
    return out


def section_train(ctx) -> dict:
    from types import SimpleNamespace

    from monai_ils.bench.train import _measure
    from monai_ils.models.testing import write_tiny_ils_dataset

    s, device = ctx.sizes, ctx.device
    data = write_tiny_ils_dataset(ctx.tmp / "train_data", n_images=s.train_images, size=(512, 512))
    out = {"batch": s.train_batch, "lora": "r128/alpha256", "zero": 2, "gradient_checkpointing": True}
    ctx.partial = out
    for mode in ("pixels", "cache"):
        model, processor = build_rosalia(s.rosalia, device, ctx.dtype)
        trainer = build_trainer(model, processor, data, ctx.tmp / f"run_{mode}", mode == "cache", s.train_batch, bf16=device.type == "cuda")
        start = time.perf_counter()
        trainer.setup()
        setup = time.perf_counter() - start
        figures = _measure(trainer, SimpleNamespace(warmup=1, steps=s.train_steps, batch_size=s.train_batch), device)
        out[mode] = {**figures, "setup_s": setup, "peak_mib": _peak_mib(device)}
        del trainer, model
        _release(device)
    return out


def _timed_calls(fn, device: torch.device, repeats: int = 2) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def section_radedit(ctx) -> dict:
    s, device = ctx.sizes, ctx.device
    backend = build_radedit(ctx.tmp / "radedit", s, device, ctx.dtype)
    out = {"size": s.radedit_size, "ddim_steps": s.radedit_steps, "guidance_scale": backend.guidance_scale, "runs": []}
    ctx.partial = out
    encode = backend.encode_text
    for batch in s.radedit_batches:
        # The backend edits one image; a batch shares the prompt, so its text states are repeated to the batch.
        backend.encode_text = lambda prompt, b=batch: encode(prompt).expand(b, -1, -1)
        pixels = torch.rand(batch, 3, s.radedit_size, s.radedit_size, device=device, dtype=ctx.dtype) * 2 - 1
        mask = torch.zeros(batch, 1, s.radedit_size, s.radedit_size, device=device, dtype=ctx.dtype)
        mask[..., s.radedit_size // 4 : 3 * s.radedit_size // 4, s.radedit_size // 4 : 3 * s.radedit_size // 4] = 1
        _reset_peak(device)
        seconds = _timed_calls(lambda: backend.edit(pixels, mask), device, repeats=1)
        out["runs"].append({"batch": batch, "s_per_image": seconds / batch, "peak_mib": _peak_mib(device)})
    return out


def _network_rates(model, size: int, batches, device, dtype, channels: int) -> list[dict]:
    runs = []
    for batch in batches:
        x = torch.rand(batch, channels, size, size, device=device, dtype=dtype)
        _reset_peak(device)
        with torch.no_grad():
            seconds = _timed_calls(lambda: model(x), device)
        runs.append({"batch": batch, "images_per_s": batch / seconds, "peak_mib": _peak_mib(device)})
    return runs


def section_cxas(ctx) -> dict:
    model = build_cxas(ctx.device, ctx.dtype)
    return {"size": ctx.sizes.cxas_size, "runs": _network_rates(model, ctx.sizes.cxas_size, ctx.sizes.cue_batches, ctx.device, ctx.dtype, 3)}


def section_hybridgnet(ctx) -> dict:
    size = ctx.sizes.hybridgnet_size
    model = build_hybridgnet(size, ctx.device, ctx.dtype)
    return {"size": size, "runs": _network_rates(model, size, ctx.sizes.cue_batches, ctx.device, ctx.dtype, 1)}


def section_yolo(ctx) -> dict:
    s = ctx.sizes
    backend = build_yolo(ctx.tmp / "yolo", s.yolo_cfg, s.yolo_size, ctx.device)
    rng = np.random.default_rng(0)
    out = {"model": s.yolo_cfg, "imgsz": s.yolo_size, "runs": []}
    for batch in s.cue_batches:
        backend.batch_size = batch
        images = [torch.as_tensor(rng.uniform(0, 4095, (1, s.yolo_size, s.yolo_size)).astype(np.float32)) for _ in range(batch)]
        seconds = _timed_calls(lambda: backend.batch(images), ctx.device)
        out["runs"].append({"batch": batch, "images_per_s": batch / seconds})
    return out


SECTIONS = {"environment": section_environment, "inference": section_inference, "train": section_train, "radedit": section_radedit,
            "cxas": section_cxas, "hybridgnet": section_hybridgnet, "yolo": section_yolo}


@dataclass
class Context:
    sizes: Sizes
    device: torch.device
    dtype: torch.dtype
    tmp: Path
    partial: dict | None = None


def run_sections(ctx: Context, names, cap_scale: float = 1.0) -> dict:
    """Run each section under its time cap; an error or an overrun is recorded (with what was measured) and the next section runs."""
    report = {}
    for name in names:
        ctx.partial = None
        start = time.perf_counter()
        print(f"[gpu bench] {name} ...", flush=True)
        try:
            with time_cap(ctx.sizes.caps[name] * cap_scale):
                result = SECTIONS[name](ctx)
            entry = {"status": "ok", **result}
        except BaseException as exc:  # KeyboardInterrupt stops the run; anything else is recorded
            if isinstance(exc, KeyboardInterrupt):
                raise
            entry = {"status": "error", "error": f"{type(exc).__name__}: {exc}".strip()[:500], "where": traceback.format_exc(limit=3)[-1500:],
                     **(ctx.partial or {})}
        entry["seconds"] = round(time.perf_counter() - start, 2)
        report[name] = entry
        print(f"[gpu bench] {name}: {entry['status']} in {entry['seconds']} s" + (f" ({entry['error']})" if entry["status"] != "ok" else ""), flush=True)
        _release(ctx.device)
    return report


# ------------------------------------------------------------------------------------------ report
def _fmt(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict) -> str:
    meta = report["meta"]
    env = report["sections"].get("environment", {})
    lines = [f"# GPU check ({'dry run, tiny sizes on CPU: figures are not comparable' if meta['dry_run'] else 'real sizes'})", "",
             f"Date {meta['date']}; device {env.get('gpu', meta['device'])}; torch {env.get('torch', '?')}; dtype {meta['dtype']}; "
             f"total {meta['seconds']:.0f} s.", "", "| section | status | seconds |", "|---|---|---|"]
    for name, entry in report["sections"].items():
        lines.append(f"| {name} | {entry['status']}{': ' + entry['error'] if entry['status'] != 'ok' else ''} | {entry['seconds']} |")
    inference = report["sections"].get("inference", {})
    if inference.get("runs"):
        lines += ["", f"## Inference (ROSALIA {inference['params_b']:.2f}B parameters, {inference['samples']} samples, greedy, {inference['max_new_tokens']} new tokens)", "",
                  "| mode | batch | embedding cache | samples/s | paper | target | peak GPU MiB |", "|---|---|---|---|---|---|---|"]
        for r in inference["runs"]:
            lines.append(f"| {r['mode']} | {r['batch']} | {'yes' if r['cache'] else 'no'} | {_fmt(r['samples_per_s'])} | {_fmt(PAPER[r['mode']])} | "
                         f">= {_fmt(TARGET[r['mode']], 0)} | {_fmt(r['peak_mib'], 0)} |")
    train = report["sections"].get("train", {})
    if any(mode in train for mode in ("pixels", "cache")):
        lines += ["", f"## Training step (ZeRO-2, LoRA {train['lora']}, gradient checkpointing, micro-batch {train['batch']})", "",
                  "| input | samples/s | step ms | paper per GPU | target | peak GPU MiB | setup s |", "|---|---|---|---|---|---|---|"]
        for mode in ("pixels", "cache"):
            if mode in train:
                r = train[mode]
                lines.append(f"| {mode} | {_fmt(r['samples_per_s'])} | {_fmt(r['step_s'] * 1000, 0)} | {_fmt(PAPER['train_per_gpu'])} | "
                             f">= {_fmt(TARGET['train_per_gpu'])} | {_fmt(r['peak_mib'], 0)} | {_fmt(r['setup_s'], 1)} |")
    radedit = report["sections"].get("radedit", {})
    if radedit.get("runs"):
        lines += ["", f"## RadEdit ({radedit['size']}², {radedit['ddim_steps']} DDIM steps, inversion + guided regeneration)", "",
                  "| batch | s/image | peak GPU MiB |", "|---|---|---|"]
        lines += [f"| {r['batch']} | {_fmt(r['s_per_image'])} | {_fmt(r['peak_mib'], 0)} |" for r in radedit["runs"]]
    for name, title in (("cxas", "CXAS network"), ("hybridgnet", "HybridGNet network"), ("yolo", "YOLO backend (predict + NMS)")):
        entry = report["sections"].get(name, {})
        if entry.get("runs"):
            size = entry.get("size", entry.get("imgsz"))
            lines += ["", f"## {title} at {size}² {entry.get('model', '')}".rstrip(), "", "| batch | images/s |", "|---|---|"]
            lines += [f"| {r['batch']} | {_fmt(r['images_per_s'])} |" for r in entry["runs"]]
    lines += ["", f"Paper anchors: {PAPER['segment']:.1f} samples/s segmentation only, {PAPER['generate']:.1f} with text (12K test samples in 20 min / "
              f"1.5 h), {PAPER['train_per_gpu']:.1f} training samples/s per GPU (15 epochs x ~1M samples in 2.5 days on 2 H100).", ""]
    return "\n".join(lines)


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".", help="folder for gpu_report.json and gpu_report.md")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU: checks every code path in about a minute")
    parser.add_argument("--sections", nargs="+", choices=tuple(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--max-new-tokens", type=int, default=None, help="greedy tokens per answer (default 16, as the inference benchmark)")
    parser.add_argument("--cap-scale", type=float, default=1.0, help="multiply every section's time cap")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    sizes = DRY if args.dry_run else REAL
    if args.max_new_tokens is not None:
        from dataclasses import replace

        sizes = replace(sizes, max_new_tokens=args.max_new_tokens)
    if args.dry_run:
        device, dtype = torch.device("cpu"), torch.float32
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("python -m monai_ils.bench gpu needs a CUDA device; use --dry-run to check the code paths on CPU.", file=sys.stderr)
            return 2
        device, dtype = torch.device("cuda:0"), torch.bfloat16
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as tmp:
        sections = run_sections(Context(sizes, device, dtype, Path(tmp)), args.sections, args.cap_scale)
    report = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": args.dry_run, "device": str(device),
                       "dtype": str(dtype).replace("torch.", ""), "seconds": time.perf_counter() - start, "paper": PAPER, "target": TARGET},
              "sections": sections}
    (out / "gpu_report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_report.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0 if all(entry["status"] == "ok" for entry in sections.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

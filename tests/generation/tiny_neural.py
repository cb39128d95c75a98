"""Tiny randomly initialised RadEdit, CXAS, HybridGNet and YOLO models saved in the real weights layouts (the same
constructions as tests/cues/test_neural.py), for running the paper's bundle wiring end to end."""

from __future__ import annotations

from pathlib import Path

import torch

from monai_ils import vocab


def write_radedit(root: Path) -> dict[str, Path]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                         cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8).save_pretrained(root / "unet")
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  block_out_channels=(8, 16), latent_channels=4, norm_num_groups=8, sample_size=32, scaling_factor=0.13025).save_pretrained(root / "vae")
    text = root / "text_encoder"
    text.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "acute", "cardio", "##pulmonary", "process"]
    (text / "vocab.txt").write_text("\n".join(words))
    BertTokenizer(str(text / "vocab.txt")).save_pretrained(text)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                        max_position_embeddings=128)
    BertModel(config, add_pooling_layer=False).save_pretrained(text)
    return {"radedit_unet": root / "unet", "radedit_vae": root / "vae", "radedit_text_encoder": text}


def random_cxas(on=("heart", "right lung", "left lung")):
    """A full-size CXAS UNet with random weights whose output is constant: ``on`` classes everywhere."""
    from monai_ils.cues.cxas import CXASUNet

    with torch.device("meta"):
        model = CXASUNet()
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.data.normal_(0, 0.01, generator=g)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
    out = model.head.out.conv
    out.weight.data.zero_()
    out.bias.data[:] = -20.0
    for label in on:
        out.bias.data[vocab.CXAS_LABEL_IDS[label]] = 20.0
    return model.eval()


def write_cxas(path: Path, on=("heart", "right lung", "left lung")) -> Path:
    """A CXAS checkpoint (``{"model": state_dict}``, DataParallel keys) of :func:`random_cxas`."""
    model = random_cxas(on)
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def write_hybridgnet(path: Path) -> Path:
    from monai_ils.cues.hybridgnet import HybridGNet

    torch.manual_seed(0)
    torch.save(HybridGNet(input_size=64).eval().state_dict(), path)
    return path


def write_yolo(root: Path) -> tuple[Path, Path]:
    """(weights, ultralytics config dir) of a YOLOv8n with the VinBigData classes, confident in "nodule/mass"."""
    from monai_ils.cues.yolo import prepare_offline_ultralytics

    root.mkdir(parents=True, exist_ok=True)
    prepare_offline_ultralytics(root / "config")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=len(vocab.VINBIG_CLASSES), verbose=False)
    model.names = dict(enumerate(vocab.VINBIG_CLASSES))
    for branch in model.model[-1].cv3:
        last = branch[-1]
        torch.nn.init.zeros_(last.weight)
        last.bias.data[:] = -8.0
        last.bias.data[8] = 8.0
    path = root / "vinbig_yolov8n.pt"
    torch.save({"model": model.half(), "ema": None, "train_args": {"task": "detect", "imgsz": 64}, "version": "8", "date": None}, path)
    return path, root / "config"

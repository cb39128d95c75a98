"""ROSALIA's training loss: λ_txt·CE + λ_bce·BCE + λ_dice·Dice (paper Sec. 5; defaults 0.5 / 5 / 1).

BCE is averaged over every mask, so negatives (empty ground truth) are pushed towards an empty
prediction; Dice is averaged over positives only (it is undefined for an empty target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossWeights:
    """Coefficients of the three terms; saved in training checkpoints and restored on resume."""

    ce: float = 0.5
    bce: float = 5.0
    dice: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data) -> LossWeights:
        return cls(**{k: float(v) for k, v in dict(data).items()})


def sigmoid_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy of one mask (any shape)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - soft Dice of one mask; LISA's form (eps in numerator and denominator)."""
    prob = logits.float().sigmoid().flatten()
    target = target.float().flatten()
    return 1.0 - (2.0 * (prob * target).sum() + eps) / (prob.sum() + target.sum() + eps)


class RosaliaLoss:
    """Combine the LM loss of a forward pass with the mask losses against padded ground truth."""

    def __init__(self, ce: float = 0.5, bce: float = 5.0, dice: float = 1.0):
        self.weights = LossWeights(ce, bce, dice)

    def __call__(
        self,
        lm_loss: torch.Tensor | None,
        mask_logits: Sequence[torch.Tensor],
        gt_masks: torch.Tensor | Sequence[torch.Tensor],
        positive: Sequence[bool] | torch.Tensor,
        input_sizes: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return ``{"loss", "ce", "bce", "dice"}`` (the last three unweighted, for logging).

        mask_logits[i]: [1, h, w] logits of sample i (one [SEG] per answer); gt_masks[i]: its ground
        truth, padded to SAM's square input (cropped to ``input_sizes[i]``) or already [h, w].
        """
        if len(mask_logits) != len(gt_masks):
            raise ValueError(f"{len(mask_logits)} predicted masks for {len(gt_masks)} ground-truth masks.")
        bce_terms, dice_terms = [], []
        for i, logits in enumerate(mask_logits):
            if logits.shape[0] != 1:
                raise ValueError(f"Sample {i}: expected one [SEG] mask, got {logits.shape[0]}; each answer must hold exactly one [SEG].")
            pred = logits[0]
            target = gt_masks[i]
            if input_sizes is not None:
                h, w = (int(v) for v in input_sizes[i])
                target = target[:h, :w]
            target = target.to(pred.device)
            if target.shape != pred.shape:
                raise ValueError(f"Sample {i}: predicted mask {tuple(pred.shape)} vs ground truth {tuple(target.shape)}.")
            bce_terms.append(sigmoid_bce(pred, target))
            if bool(positive[i]):
                dice_terms.append(dice_loss(pred, target))
        anchor = mask_logits[0].sum() * 0.0 if len(mask_logits) else torch.zeros(())
        bce = torch.stack(bce_terms).mean() if bce_terms else anchor
        dice = torch.stack(dice_terms).mean() if dice_terms else anchor
        ce = lm_loss.float() if lm_loss is not None else anchor
        w = self.weights
        loss = w.ce * ce + w.bce * bce + w.dice * dice
        return {"loss": loss, "ce": ce.detach(), "bce": bce.detach(), "dice": dice.detach()}

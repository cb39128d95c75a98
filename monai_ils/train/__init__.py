"""Training ROSALIA: losses, dataset and its preprocessing, balanced sampler, frozen-encoder cache, the DeepSpeed
training loop and its handlers (docs/training.md; the rosalia bundle's train.json wires them)."""

from monai_ils.train.dataset import ILSTrainingDataset, SampleError, collate_ils
from monai_ils.train.losses import LossWeights, RosaliaLoss, dice_loss, sigmoid_bce
from monai_ils.train.sampler import BalancedBatchSampler
from monai_ils.train.transforms import (
    EqualizeHistogram,
    EqualizeHistogramVariantd,
    RandEqualizeHistogramd,
    RosaliaImageInputsd,
    equalize_histogram_uint8,
    train_image_transform,
)
from monai_ils.train.workflow import DeepSpeedTrainer, Events

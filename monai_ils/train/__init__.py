"""Training ROSALIA: losses, dataset, balanced sampler, frozen-encoder cache, DeepSpeed trainer (docs/training.md)."""

from monai_ils.train.dataset import ILSTrainingDataset, SampleError, collate_ils
from monai_ils.train.losses import LossWeights, RosaliaLoss, dice_loss, sigmoid_bce
from monai_ils.train.sampler import BalancedBatchSampler
from monai_ils.train.transforms import EqualizeHistogram, RandEqualizeHistogramd, equalize_histogram_uint8

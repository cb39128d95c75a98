from lib.transforms.inputs import CheckCXRSize, CheckCXRSized, RequireTextd, ResolveCXR, ResolveCXRd
from lib.transforms.outputs import LabelMap, LabelMapd

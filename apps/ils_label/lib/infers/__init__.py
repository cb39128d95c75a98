from lib.infers.grounding import GroundingInfer
from lib.infers.rosalia import RosaliaInfer

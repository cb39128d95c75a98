"""Instruction-answer generation: grounded findings -> Table 2 pairs, quality control, the streaming runner."""

from monai_ils.generation.findings import GroundedFinding, StudyGrounding
from monai_ils.generation.pairs import GeneratedPairs, PairGenerator, generate_pairs, instruction_locations, study_rng

__all__ = [
    "GroundedFinding",
    "StudyGrounding",
    "GeneratedPairs",
    "PairGenerator",
    "generate_pairs",
    "instruction_locations",
    "study_rng",
]

"""Yardsticks: ways the papers grade a saliency map. They take maps (tensors), never method names."""
from .attack import AttackResult, salt_and_pepper_attack
from .correction import CorrectionResult, closed_loop_correction

__all__ = ["AttackResult", "CorrectionResult", "closed_loop_correction", "salt_and_pepper_attack"]

"""Yardsticks: ways the papers grade a saliency map. They take maps (tensors), never method names."""
from .correction import CorrectionResult, closed_loop_correction

__all__ = ["CorrectionResult", "closed_loop_correction"]

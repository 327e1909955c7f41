"""Saliency methods. Each has Captum's verb: ``Method(...).attribute(inputs, target=...)``."""
from .mpe import MPE, MPETable, correction_arms, exact_mpe, mpe_attack_plan, mpe_table

__all__ = ["MPE", "MPETable", "correction_arms", "exact_mpe", "mpe_attack_plan", "mpe_table"]

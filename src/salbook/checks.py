"""Input validation shared by methods and yardsticks: bad input fails early, saying what to do."""
from __future__ import annotations

import torch


def check_inputs(inputs: torch.Tensor, input_shape: tuple | None = None) -> None:
    """Model inputs must be a float tensor ``(N, C, H, W)``, finite, with values in ``[0, 1]``."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor (use data.to_input on uint8 images), got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be floating point in [0, 1] (use data.to_input on uint8 images), got {inputs.dtype}")
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be shaped (N, C, H, W), got {tuple(inputs.shape)}")
    if input_shape is not None and tuple(inputs.shape[1:]) != tuple(input_shape):
        raise ValueError(f"inputs have per-image shape {tuple(inputs.shape[1:])}, expected {tuple(input_shape)}")
    if not torch.isfinite(inputs).all():
        raise ValueError("inputs contain NaN or infinite values")
    if inputs.min() < 0 or inputs.max() > 1:
        raise ValueError(
            f"inputs must lie in [0, 1] (got {inputs.min().item():.3g}..{inputs.max().item():.3g}); "
            "normalisation belongs inside the model, not in the inputs"
        )


def targets_or_prediction(model, inputs: torch.Tensor, target) -> torch.Tensor:
    """:func:`as_targets` of ``target``, or, when it is None, each input's predicted class (int64, CPU):
    the default of every ``attribute(inputs, target=None)``."""
    if target is not None:
        return as_targets(target, len(inputs))
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(inputs.to(device)).argmax(1).cpu()


def as_targets(target, n: int, n_classes: int | None = None) -> torch.Tensor:
    """Captum-style ``target`` (an int, or one class per input) → int64 tensor ``(n,)``."""
    t = torch.as_tensor(target)
    if t.is_floating_point():
        raise TypeError(f"target must hold integer class indices, got {t.dtype}")
    t = t.long().cpu()
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"target must be an int or hold one class per input ({n}), got shape {tuple(t.shape)}")
    if n_classes is not None and len(t) and (t.min() < 0 or t.max() >= n_classes):
        raise ValueError(f"target classes must lie in 0..{n_classes - 1}, got {t.min().item()}..{t.max().item()}")
    return t.clone()


def check_maps(maps, inputs_shape: tuple | None = None, name: str = "maps") -> None:
    """Saliency maps given to a yardstick must be a finite float tensor (or array), one per input:
    a NaN map (a method that divided by zero, a failed solver) is refused here, never ranked as if it
    were a map."""
    if not isinstance(maps, torch.Tensor):
        try:
            maps = torch.as_tensor(maps)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a tensor or an array, got {type(maps).__name__}") from err
    if not maps.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {maps.dtype}")
    if inputs_shape is not None and maps.shape[0] != inputs_shape[0]:
        raise ValueError(f"{name} hold {maps.shape[0]} maps for {inputs_shape[0]} inputs: one map per input")
    bad = ~torch.isfinite(maps)
    if bad.any():
        per_map = bad.flatten(1).any(1) if maps.ndim > 1 else bad
        raise ValueError(f"{name} contain NaN or infinite values ({int(per_map.sum())} of {len(per_map)} maps): "
                         "fix the method that produced them (a division by zero? a failed solver?) before scoring")

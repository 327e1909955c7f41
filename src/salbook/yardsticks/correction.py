"""Closed-loop validation by classification correction (MPE paper, §3.2–3.3 and §4.2).

A saliency map is *closed-loop validated* (eq. 7) when a mask it inspires, of L1 size at most ε,
with replacement operator φ, moves the prediction to a chosen class j:

    argmax f(m ⊙ φ(z) + (1 − m) ⊙ z) = j,   ‖m‖₁ ≤ ε.

:func:`closed_loop_correction` builds the mask greedily, as §4.2 describes for the typical-sample
correction (eq. 9): try input dimensions in ascending order of a score map, replace each by its
replacement value, **keep a replacement only if it raises the probability of class j** ("if a pixel
replacement does not improve the prediction, it will not be replaced"), stop when the prediction is j
(success) or ε replacements are kept. It takes maps, not a method, so any saliency method can be
validated this way.

Candidates are evaluated speculatively in batches: for each image the next few candidates are each
applied to the *current* image in one forward pass; the first that improves is kept, the ones before
it are rejected, and evaluation resumes after it. This gives exactly the sequential greedy result
with far fewer Python-level forward calls. The candidates evaluated after the kept one are wasted
(they must be tried again on the changed image), so each image's chunk adapts: it is one candidate
after a kept replacement and doubles after every chunk without an improvement, up to ``chunk``. A
long run of rejected candidates is then walked in a few large batches, and little is thrown away
after a change.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..checks import as_targets, check_inputs


@dataclass
class CorrectionResult:
    """Outcome per image of :func:`closed_loop_correction`.

    ``success``: prediction became the target; ``n_replaced``: replacements kept (‖m‖₁);
    ``n_tried``: candidate dimensions examined; ``inputs``: the final images; ``probs_before``:
    class probabilities of the original images; ``steps[k]``: the kept replacements of image k as
    ``(dim, old_value, new_value, probs_after)``.
    """

    success: np.ndarray
    n_replaced: np.ndarray
    n_tried: np.ndarray
    inputs: torch.Tensor
    probs_before: torch.Tensor
    steps: list = field(default_factory=list)

    @property
    def rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else float("nan")

    def trajectory(self, k: int, original: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Image ``k`` after 0, 1, … kept replacements: ``(images (S+1, C, H, W), probs (S+1, c),
        changed)``, where ``changed[s]`` lists the ``(row, col)`` pixels replaced in the first s steps."""
        x = original.detach().clone()
        images, probs, changed = [x.clone()], [self.probs_before[k]], [[]]
        for dim, _, new, p in self.steps[k]:
            x.view(-1)[dim] = new
            _, row, col = np.unravel_index(dim, tuple(x.shape))
            images.append(x.clone())
            probs.append(p)
            changed.append(changed[-1] + [(int(row), int(col))])
        return torch.stack(images), torch.stack(probs), changed


@torch.no_grad()
def closed_loop_correction(model, inputs: torch.Tensor, target, scores: torch.Tensor,
                           replacement: torch.Tensor, eps: int = 10, max_tries: int | None = None,
                           chunk: int = 32, batch_size: int = 128, progress: bool = True) -> CorrectionResult:
    """Greedy closed-loop correction of eq. 7/9 towards class ``target``.

    Args:
        model: classifier returning logits for inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        target: the class j to reach (int, or one per image): the true label for a correction.
        scores: map shaped like ``inputs``; dimensions are tried in **ascending** score order
            (NaN scores are tried last).
        replacement: values shaped like ``inputs``; dimension i of image k is set to ``replacement[k, i]``.
        eps: ε, the most replacements kept per image (the paper uses 10).
        max_tries: most candidate dimensions examined per image (default: all of them).
        chunk: most candidates evaluated per image per forward batch (speed only; results do not
            depend on it). Each image's chunk restarts at 1 after a kept replacement and doubles after
            a chunk without one.
        batch_size: most images per forward pass.
        progress: show a tqdm bar.
    """
    check_inputs(inputs)
    n_img, n_dims = len(inputs), inputs[0].numel()
    for name, t in (("scores", scores), ("replacement", replacement)):
        if tuple(t.shape) != tuple(inputs.shape):
            raise ValueError(f"{name} must be shaped like inputs {tuple(inputs.shape)}, got {tuple(t.shape)}")
    if eps < 1 or chunk < 1:
        raise ValueError(f"eps and chunk must be positive integers, got eps={eps}, chunk={chunk}")
    max_tries = n_dims if max_tries is None else min(max_tries, n_dims)
    if max_tries < 1 or n_img == 0:
        raise ValueError("nothing to do: max_tries and the number of images must be positive")
    targets = as_targets(target, n_img)
    device = next(model.parameters()).device

    order = scores.flatten(1).float().nan_to_num(nan=torch.inf).argsort(dim=1, stable=True)
    rep = replacement.flatten(1).to(inputs.dtype)
    x = inputs.detach().flatten(1).clone()
    probs = _probs(model, x, inputs.shape, device, batch_size)
    targets = as_targets(targets, n_img, probs.shape[1])
    probs_before = probs.clone()
    success = probs.argmax(1) == targets
    kept = torch.zeros(n_img, dtype=torch.long)
    pos = torch.zeros(n_img, dtype=torch.long)
    size = torch.ones(n_img, dtype=torch.long)  # each image's current chunk
    steps = [[] for _ in range(n_img)]

    with tqdm(total=n_img, desc="closed-loop correction", disable=not progress) as bar:
        bar.update(int(success.sum()))
        while True:
            active = (~success & (kept < eps) & (pos < max_tries)).nonzero().flatten()
            if len(active) == 0:
                break
            offsets = torch.arange(int(size[active].max()))
            cand_pos = pos[active, None] + offsets
            valid = (offsets < size[active, None]) & (cand_pos < max_tries)
            dims = order[active[:, None], cand_pos.clamp(max=n_dims - 1)]
            new_values = rep[active[:, None], dims]
            # a candidate that leaves the value unchanged cannot improve: skip its forward pass
            changes = valid & (new_values != x[active[:, None], dims])
            rows, cols = changes.nonzero(as_tuple=True)
            p_trial = torch.full((*dims.shape, probs.shape[1]), -torch.inf)
            if len(rows):
                p_trial[rows, cols] = _trial_probs(model, x, active[rows], dims[rows, cols], new_values[rows, cols],
                                                   inputs.shape, device, batch_size)
            p_target = p_trial[torch.arange(len(active)), :, targets[active]]
            better = (p_target > probs[active, targets[active]][:, None]) & changes
            found = better.any(1)
            miss = active[~found]
            pos[miss] += size[miss]
            size[miss] = (size[miss] * 2).clamp(max=chunk)
            hit = found.nonzero().flatten()
            a, k = active[hit], better[hit].float().argmax(1)  # the first improving candidate
            d = dims[hit, k]
            for img, dim, p in zip(a.tolist(), d.tolist(), p_trial[hit, k]):
                steps[img].append((dim, x[img, dim].item(), rep[img, dim].item(), p.clone()))
            x[a, d] = rep[a, d]
            probs[a] = p_trial[hit, k]
            kept[a] += 1
            pos[a] += k + 1
            size[a] = 1
            done = a[probs[a].argmax(1) == targets[a]]
            success[done] = True
            bar.update(len(done))
    return CorrectionResult(
        success=success.numpy(),
        n_replaced=kept.numpy(),
        n_tried=pos.clamp(max=max_tries).numpy(),
        inputs=x.view(inputs.shape),
        probs_before=probs_before,
        steps=steps,
    )


def _probs(model, flat: torch.Tensor, shape: torch.Size, device, batch_size: int) -> torch.Tensor:
    """Class probabilities of flat images ``(M, n)`` reshaped to ``shape[1:]``, in batches."""
    out = [_forward(model, flat[start:start + batch_size].view(-1, *shape[1:]), device)
           for start in range(0, len(flat), batch_size)]
    return torch.cat(out)


def _trial_probs(model, x: torch.Tensor, images: torch.Tensor, dims: torch.Tensor, values: torch.Tensor,
                 shape: torch.Size, device, batch_size: int) -> torch.Tensor:
    """Probabilities of the trials ``x[images[t]]`` with dimension ``dims[t]`` set to ``values[t]``,
    each batch of trials built just before its forward pass (memory stays at one batch)."""
    out = []
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        trial = x[images[sl]]
        trial[torch.arange(len(trial)), dims[sl]] = values[sl]
        out.append(_forward(model, trial.view(-1, *shape[1:]), device))
    return torch.cat(out)


def _forward(model, batch: torch.Tensor, device) -> torch.Tensor:
    """Softmax of the model on one batch, fed channels-last (faster convolutions on a CPU)."""
    batch = batch.to(device).contiguous(memory_format=torch.channels_last)
    return F.softmax(model(batch), dim=1).cpu()

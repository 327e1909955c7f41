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

**Unit of an edit.** ``unit="channel"`` (the default) makes each input dimension a candidate: on an
RGB image one edit changes one of the 3·H·W values. ``unit="pixel"`` makes each pixel a candidate:
one edit sets all its channels to their replacement values at once (the MPE paper's Figure 7 and
its attack speak of pixels), ``scores`` is then one map ``(N, H, W)`` per image and ε counts pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..checks import as_targets, check_inputs, check_maps

UNITS = ("channel", "pixel")


@dataclass
class CorrectionResult:
    """Outcome per image of :func:`closed_loop_correction`.

    ``success``: prediction became the target; ``n_replaced``: replacements kept (‖m‖₁);
    ``n_tried``: candidate dimensions examined; ``inputs``: the final images; ``probs_before``:
    class probabilities of the original images; ``steps[k]``: the kept replacements of image k as
    ``(dim, old_value, new_value, probs_after)``, where ``dim`` is a flat input dimension
    (``unit="channel"``) or a flat pixel index row·W + col (``unit="pixel"``, whose old and new values
    are then tensors of the pixel's channels).
    """

    success: np.ndarray
    n_replaced: np.ndarray
    n_tried: np.ndarray
    inputs: torch.Tensor
    probs_before: torch.Tensor
    steps: list = field(default_factory=list)
    unit: str = "channel"

    def pixels(self, k: int) -> np.ndarray:
        """The distinct flat pixel indices (row·W + col) edited in image ``k``, whatever the unit."""
        hw = self.inputs.shape[-2] * self.inputs.shape[-1]
        return np.unique([dim % hw for dim, *_ in self.steps[k]]).astype(int)

    @property
    def rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else float("nan")

    def trajectory(self, k: int, original: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Image ``k`` after 0, 1, … kept replacements: ``(images (S+1, C, H, W), probs (S+1, c),
        changed)``, where ``changed[s]`` lists the ``(row, col)`` pixels replaced in the first s steps."""
        x = original.detach().clone()
        images, probs, changed = [x.clone()], [self.probs_before[k]], [[]]
        c, h, w = x.shape
        for dim, _, new, p in self.steps[k]:
            if self.unit == "pixel":
                x.view(c, -1)[:, dim] = torch.as_tensor(new, dtype=x.dtype)
                row, col = divmod(dim, w)
            else:
                x.view(-1)[dim] = new
                _, row, col = np.unravel_index(dim, (c, h, w))
            images.append(x.clone())
            probs.append(p)
            changed.append(changed[-1] + [(int(row), int(col))])
        return torch.stack(images), torch.stack(probs), changed


@torch.no_grad()
def closed_loop_correction(model, inputs: torch.Tensor, target, scores: torch.Tensor,
                           replacement: torch.Tensor, eps: int = 10, max_tries: int | None = None,
                           chunk: int = 32, batch_size: int = 128, progress: bool = True,
                           unit: str = "channel") -> CorrectionResult:
    """Greedy closed-loop correction of eq. 7/9 towards class ``target``.

    Args:
        model: classifier returning logits for inputs in [0, 1].
        inputs: ``(N, C, H, W)`` images in [0, 1].
        target: the class j to reach (int, or one per image): the true label for a correction; it
            must lie in 0..c-1 for a model with c classes.
        scores: map shaped like ``inputs`` (``unit="channel"``) or ``(N, H, W)`` (``unit="pixel"``);
            candidates are tried in **ascending** score order. Scores must be finite (a NaN map is
            refused: give the candidates to try last a score of +inf).
        replacement: values shaped like ``inputs``; dimension i of image k is set to ``replacement[k, i]``
            (``unit="pixel"``: all channels of a pixel at once).
        eps: ε, the most replacements kept per image (the paper uses 10).
        max_tries: most candidates examined per image (default: all of them).
        chunk: most candidates evaluated per image per forward batch (speed only; results do not
            depend on it). Each image's chunk restarts at 1 after a kept replacement and doubles after
            a chunk without one.
        batch_size: most images per forward pass.
        progress: show a tqdm bar.
        unit: ``"channel"`` (one input dimension per edit) or ``"pixel"`` (all channels of one pixel).
    """
    check_inputs(inputs)
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    n_img, c, h, w = inputs.shape
    groups, n_cand = (1, c * h * w) if unit == "channel" else (c, h * w)  # channels per edit, candidates
    score_shape = tuple(inputs.shape) if unit == "channel" else (n_img, h, w)
    if tuple(scores.shape) != score_shape:
        raise ValueError(f"scores must be shaped {score_shape} for unit={unit!r}, got {tuple(scores.shape)}")
    if tuple(replacement.shape) != tuple(inputs.shape):
        raise ValueError(f"replacement must be shaped like inputs {tuple(inputs.shape)}, got {tuple(replacement.shape)}")
    # +inf is allowed (a candidate to try last, e.g. a value MPE never saw); NaN and -inf are refused
    check_maps(scores.masked_fill(scores == torch.inf, 0.0), tuple(inputs.shape), "scores")
    check_maps(replacement, tuple(inputs.shape), "replacement")
    if eps < 1 or chunk < 1:
        raise ValueError(f"eps and chunk must be positive integers, got eps={eps}, chunk={chunk}")
    max_tries = n_cand if max_tries is None else min(max_tries, n_cand)
    if max_tries < 1 or n_img == 0:
        raise ValueError("nothing to do: max_tries and the number of images must be positive")
    targets = as_targets(target, n_img)
    device = next(model.parameters()).device

    order = scores.flatten(1).float().argsort(dim=1, stable=True)  # (N, candidates)
    rep = replacement.reshape(n_img, groups, n_cand).to(inputs.dtype)
    x = inputs.detach().flatten(1).clone()
    xg = x.view(n_img, groups, n_cand)  # the same storage, one row of channels per candidate
    probs = _probs(model, x, inputs.shape, device, batch_size)
    targets = as_targets(targets, n_img, probs.shape[1])  # a target outside 0..c-1 is refused here
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
            dims = order[active[:, None], cand_pos.clamp(max=n_cand - 1)]
            new_values = rep[active[:, None], :, dims]  # (active, chunk, groups)
            # a candidate that leaves the values unchanged cannot improve: skip its forward pass
            changes = valid & (new_values != xg[active[:, None], :, dims]).any(-1)
            rows, cols = changes.nonzero(as_tuple=True)
            p_trial = torch.full((*dims.shape, probs.shape[1]), -torch.inf)
            if len(rows):
                p_trial[rows, cols] = _trial_probs(model, x, active[rows], dims[rows, cols], new_values[rows, cols],
                                                   inputs.shape, groups, device, batch_size)
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
                old, new = xg[img, :, dim].clone(), rep[img, :, dim].clone()
                steps[img].append((dim, old.item(), new.item(), p.clone()) if unit == "channel" else (dim, old, new, p.clone()))
            xg[a, :, d] = rep[a, :, d]
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
        unit=unit,
    )


def _probs(model, flat: torch.Tensor, shape: torch.Size, device, batch_size: int) -> torch.Tensor:
    """Class probabilities of flat images ``(M, n)`` reshaped to ``shape[1:]``, in batches."""
    out = [_forward(model, flat[start:start + batch_size].view(-1, *shape[1:]), device)
           for start in range(0, len(flat), batch_size)]
    return torch.cat(out)


def _trial_probs(model, x: torch.Tensor, images: torch.Tensor, dims: torch.Tensor, values: torch.Tensor,
                 shape: torch.Size, groups: int, device, batch_size: int) -> torch.Tensor:
    """Probabilities of the trials ``x[images[t]]`` with candidate ``dims[t]`` (its ``groups``
    channels) set to ``values[t]``, each batch of trials built just before its forward pass (memory
    stays at one batch)."""
    out = []
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        trial = x[images[sl]]
        trial.view(len(trial), groups, -1)[torch.arange(len(trial)), :, dims[sl]] = values[sl]
        out.append(_forward(model, trial.view(-1, *shape[1:]), device))
    return torch.cat(out)


def _forward(model, batch: torch.Tensor, device) -> torch.Tensor:
    """Softmax of the model on one batch, fed channels-last (faster convolutions on a CPU)."""
    batch = batch.to(device).contiguous(memory_format=torch.channels_last)
    return F.softmax(model(batch), dim=1).cpu()


def stratified_sample(indices, labels, size: int | None, seed: int = 0) -> np.ndarray:
    """A seeded random sample of ``indices``, stratified by ``labels`` (one per index) with
    proportional allocation: each class keeps its share of the whole (largest remainders decide the
    rounding), so a rate measured on the sample estimates the rate on all of ``indices`` while every
    class is represented. Returned sorted; all of ``indices`` when ``size`` is None or too large."""
    indices, labels = np.asarray(indices), np.asarray(labels)
    if len(indices) != len(labels):
        raise ValueError(f"one label per index needed, got {len(indices)} indices and {len(labels)} labels")
    if size is None or size >= len(indices):
        return np.sort(indices)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / len(indices)
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: size - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(indices[labels == c], t, replace=False) for c, t in zip(classes, take) if t]
    return np.sort(np.concatenate(chosen))

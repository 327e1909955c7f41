"""The leaderboard grid as jobs of :mod:`salbook.jobs`: every registered method under every yardstick.

One :func:`setup` job per model fixes what every method is graded on: CIFAR-10 test images the model
classifies correctly (explained for their predicted class), misclassified ones (for the closed-loop
correction, with a replacement image of their true class), and the top-k saliency attack's images
x̂ (for the sensitivity yardstick). One :func:`method_scores` job per (model, method) then explains
those images, explains again where a yardstick needs it, and returns every yardstick's value per
image. A yardstick that fails for a method (an option the method lacks, a map it cannot make) leaves
that cell empty with its reason: the table says why rather than dropping the method.

Options may name data instead of holding it (job parameters are hashed): ``{"dataset": "cifar10",
"split": "train", "n": 1000}`` becomes the first ``n`` images of that split, uint8 (an MPE table's
sampling set, say).
"""
from __future__ import annotations

import time
import traceback

import numpy as np
import torch

from .. import data, zoo
from ..methods import registry
from ..methods.mpe import mpe_table
from ..yardsticks import contract
from ..yardsticks.saliency_attacks import saliency_attack

ATTACK = dict(kind="topk", eps=8 / 255, step_size=1 / 255)
ATTACKED = "gradient"  # the method whose map the shared attack moves (registry name)


def setup(model: str, profile: str, weights: str, n_images: int, n_wrong: int, attack_steps: int,
          sampling: int, min_count: int, seed: int) -> dict:
    """The images every method of ``model`` is graded on (module docstring), per value of a yardstick's
    ``on``: ``"correct"``: ``indices``, ``targets`` (predicted = true classes) and ``attacked`` (x̂ of the
    top-k attack on the gradient map, ε = 8/255 in L∞); ``"misclassified"``: ``indices``, ``targets``
    (the true classes), ``predicted`` (the wrong ones) and ``replacement``: the true class's typical
    sample (the MPE paper's eq. 6, over the first ``sampling`` training images, values seen at least
    ``min_count`` times), the one replacement every method's correction uses."""
    net = zoo.verified(model, profile, weights).model
    test = data.cifar10("test")
    order = np.random.default_rng(seed).permutation(len(test.y))[: 40 * (n_images + n_wrong)]
    pred = zoo.predict_proba(net, test.x[order]).argmax(1).numpy()
    hit = pred == test.y[order]
    right, wrong = np.flatnonzero(hit)[:n_images], np.flatnonzero(~hit)[:n_wrong]
    if len(right) < n_images or len(wrong) < n_wrong:
        raise RuntimeError(f"{model}: only {len(right)} correct and {len(wrong)} wrong test images among {len(order)}")
    labels = torch.as_tensor(test.y[order[wrong]]).long()
    typical = mpe_table(net, data.cifar10("train").x[:sampling], progress=False).typical_sample(min_count)
    replacement = typical[labels].float().div(255).view(len(labels), *data.nchw(test.x[:1]).shape[1:])
    targets = torch.as_tensor(test.y[order[right]]).long()
    start = time.perf_counter()
    x = data.to_input(test.x[order[right]], next(net.parameters()).device)
    attack = saliency_attack(registry.make(ATTACKED, net), x, target=targets.to(x.device), steps=attack_steps,
                             progress=False, **ATTACK)
    return {"correct": {"indices": torch.as_tensor(order[right]), "targets": targets, "attacked": attack.adversarial},
            "misclassified": {"indices": torch.as_tensor(order[wrong]), "targets": labels,
                              "predicted": torch.as_tensor(pred[wrong]).long(), "replacement": replacement},
            "attack_seconds": time.perf_counter() - start}


def method_scores(model: str, profile: str, weights: str, method: str, options: dict, images: dict,
                  yardsticks: dict, batch_size: int) -> dict:
    """:func:`grade` for zoo model ``model`` on the CIFAR-10 test images of ``images`` (a :func:`setup`
    result); ``options`` may name data (module docstring)."""
    net = zoo.verified(model, profile, weights).model
    test = data.cifar10("test")
    device = next(net.parameters()).device
    inputs = {on: data.to_input(test.x[images[on]["indices"].numpy()], device) for on in ("correct", "misclassified")}
    return grade(net, method, {k: _resolve(v) for k, v in options.items()}, images, inputs, yardsticks, batch_size)


def grade(net: torch.nn.Module, method: str, options: dict, images: dict, inputs: dict, yardsticks: dict,
          batch_size: int) -> dict:
    """Every yardstick of ``yardsticks`` (name → its options) for the registered ``method`` (built with
    ``options``) on ``inputs`` (per value of a yardstick's ``on``, images ``(N, C, H, W)``), whose
    ``targets`` and further arguments are in ``images[on]``. Returns per yardstick the values per image
    (``scores``), the seconds it took (``seconds``; ``maps/<on>`` the seconds of the first explanation),
    the reason of every yardstick that failed (``skipped``), and the first four maps' pixel relevance
    (``relevance``, empty when the method made no maps)."""
    output = registry.entry(method).output
    built = {}  # one method per network (an MPE table is built once per network)

    def explain(m, x, t):
        if id(m) not in built:
            built[id(m)] = (m, registry.make(method, m, **options))  # m kept: its id stays its own
        return registry.explain(built[id(m)][1], x, t, batch_size).detach().cpu().float()

    maps, seconds, scores, skipped = {}, {}, {}, {}
    for name, settings in yardsticks.items():
        ys = contract.get(name)
        batch, x = images[ys.on], inputs[ys.on]
        start = time.perf_counter()
        try:
            if ys.on not in maps:
                maps[ys.on] = explain(net, x, batch["targets"])
                seconds[f"maps/{ys.on}"] = time.perf_counter() - start
                start = time.perf_counter()
            values = ys(net, x, batch["targets"], maps[ys.on], explain if ys.needs_explain else None, output=output,
                        **{k: batch[k] for k in ys.needs}, **settings)
            scores[name] = torch.as_tensor(values, dtype=torch.float64)
        except Exception as error:  # a cell that cannot be run says why
            skipped[name] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            traceback.print_exc()
        seconds[name] = time.perf_counter() - start
    return {"scores": scores, "seconds": seconds, "skipped": skipped,
            "relevance": contract.relevance(maps["correct"][:4], output) if "correct" in maps else torch.zeros(0)}


def _resolve(value):
    if isinstance(value, dict) and set(value) == {"dataset", "split", "n"}:
        return data.load(value["dataset"], value["split"]).x[: value["n"]]
    return value

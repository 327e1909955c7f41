"""Our Frank-Wolfe and PGD against independent implementations, where they are installed:
rai-toolbox's ``L1qFrankWolfe`` (the MIT-LL port of the paper's reference code; ``pip install --no-deps
rai-toolbox``) and torchattacks' ``PGDL2`` (``pip install --no-deps torchattacks``: its own pin
``requests~=2.25.1`` would downgrade requests, idna and urllib3)."""
import pytest
import torch

from salbook.attacks import pgd_l2
from salbook.methods.frank_wolfe import frank_wolfe, top_count


@pytest.fixture
def images():
    return torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # rai-toolbox 0.2.1 on torch 2.x
@pytest.mark.parametrize("k", [1, 8, 77])
@pytest.mark.parametrize("targeted", [True, False])
def test_l1q_frank_wolfe_matches_rai_toolbox(cnn, images, k, targeted):
    pytest.importorskip("rai_toolbox")
    from rai_toolbox.optim import L1qFrankWolfe
    from rai_toolbox.perturbations import gradient_ascent

    q, target = k / 768, torch.arange(8)  # their q is the percentile left out: 1 − ours
    assert top_count(q, 768) == round((1 - (1 - q)) * 768) == k  # both keep k entries per step
    theirs, their_loss = gradient_ascent(model=cnn, data=images, target=target, optimizer=L1qFrankWolfe,
                                         q=1 - q, epsilon=5.0, lr=2.0, steps=12, targeted=targeted)
    ours = frank_wolfe(cnn, images, target, norm="l1q", eps=5.0, steps=12, q=q, c=2.0, targeted=targeted, box=False)
    assert torch.equal((theirs != images).sum((1, 2, 3)), (ours.images != images).sum((1, 2, 3)))  # same sparsity
    assert torch.allclose(their_loss, ours.loss, rtol=1e-4)
    assert torch.allclose(theirs, ours.images, atol=1e-5)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_l2_matches_torchattacks(cnn, images, random_start):
    torchattacks = pytest.importorskip("torchattacks")
    labels = cnn(images).argmax(1)
    theirs = torchattacks.PGDL2(cnn, eps=0.5, alpha=0.1, steps=10, random_start=random_start)(images, labels)
    ours = pgd_l2(cnn, images, labels, eps=0.5, steps=10, step_size=0.1, random_start=random_start)
    if random_start:  # different random draws: compare the attack's strength, not bits
        loss = torch.nn.functional.cross_entropy
        assert loss(cnn(ours), labels).item() == pytest.approx(loss(cnn(theirs), labels).item(), rel=0.1)
    else:
        assert torch.allclose(theirs, ours, atol=1e-5)

import pytest
import torch
from torch import nn

from salbook import nets
from salbook.methods import baselines
from salbook.methods.decoys import (DecoyEnhanced, Field, constant_decoys, crop_boxes, decoy_mean, decoy_range,
                                    generate_decoys, generate_decoys_loop, layer_index, patch_masks,
                                    postprocess, receptive_field, truncate, verify_decoys)


@pytest.fixture
def conv_net():
    """A tiny seeded CNN on 3 × 6 × 6 images; layer 1 (the first ReLU) is ℓ."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)).eval()


@pytest.fixture
def images():
    return torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2


class Keep(nn.Module):
    """Multiplies the image by a fixed 0/1 mask: the pixels where it is 0 do not reach layer 0 at all."""

    def __init__(self, keep):
        super().__init__()
        self.register_buffer("keep", keep)

    def forward(self, x):
        return x * self.keep


FAST = dict(steps=40, progress=False)


def test_every_feasible_decoy_satisfies_every_constraint(conv_net, images):
    eps, box = 0.05, 0.2
    result = generate_decoys(conv_net, images, layer=1, eps=eps, patch=3, box=box, **FAST)
    n_masks = 4  # 6 × 6 image, 3 × 3 patches, stride 3
    assert result.decoys.shape == (2, 2 * n_masks, 3, 6, 6) and result.feasible.shape == (2, 2 * n_masks)
    assert result.signs.tolist() == [1.0, -1.0] * n_masks
    assert result.feasible.all() and result.violation_rate == 0.0
    features = conv_net[:2]
    with torch.no_grad():
        f0 = features(images)
        for i in range(2):
            for k in range(2 * n_masks):
                d, mask = result.decoys[i, k], result.masks[k]
                assert (features(d[None]) - f0[i]).abs().max() <= eps + 1e-4
                assert torch.equal(d[:, ~mask[0]], images[i][:, ~mask[0]])  # untouched outside the patch
                assert d.min() >= 0 and d.max() <= 1
                assert (d - images[i]).abs().max() <= box + 1e-6
    moves = ((result.decoys - images[:, None]) * result.signs.view(1, -1, 1, 1, 1)).clamp(min=0).flatten(2).sum(2)
    assert (moves > 0.01).all()  # every decoy actually moved in its direction


@pytest.fixture(scope="module")
def resnet8():
    """The zoo's ResNet-8 with random weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    model = nets.build("cifar_resnet8")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0, 0.2)
    return model.eval()


def test_receptive_fields_of_the_resnet8_layers(resnet8):
    """ℓ = 3 (first ReLU): one 3×3 convolution; ℓ = 4: two more; ℓ = 5: a stride-2 block; from the
    global pooling on, every unit sees the whole image."""
    assert receptive_field(truncate(resnet8, 3)) == Field(1, -1, 1)
    assert receptive_field(truncate(resnet8, 4)) == Field(1, -3, 3)
    assert receptive_field(truncate(resnet8, 5)) == Field(2, -6, 6)
    assert receptive_field(truncate(resnet8, 7)) is None
    assert receptive_field(nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1))) == Field(2, -2, 3)


def test_crop_boxes_hold_the_widened_patch_and_stay_on_the_stride_grid():
    masks = patch_masks(32, 32, patch=3, stride=3)
    for field in (Field(1, -1, 1), Field(1, -3, 3), Field(2, -6, 6)):
        top, left, size = crop_boxes(field, masks)
        w = field.hi - field.lo
        assert (32 - size[0]) % field.stride == 0 and (top % field.stride == 0).all() and (left % field.stride == 0).all()
        for k, mask in enumerate(masks[:, 0]):
            rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
            assert top[k] <= max(0, rows.min() - w) and top[k] + size[0] >= min(32, rows.max() + 1 + w)
            assert left[k] <= max(0, cols.min() - w) and left[k] + size[1] >= min(32, cols.max() + 1 + w)
            assert 0 <= top[k] <= 32 - size[0] and 0 <= left[k] <= 32 - size[1]
    assert crop_boxes(Field(1, -1, 1), masks)[2] == (7, 7)
    assert crop_boxes(None, masks)[2] == (32, 32)


@pytest.mark.parametrize("layer", [3, 4, 5])
def test_a_crop_sees_every_change_of_the_layer(resnet8, layer):
    """The exactness the cropped solver rests on: for a change inside the patch, F_ℓ(x̃) − F_ℓ(x) on
    the crop holds the same values as on the whole image, which is zero everywhere else."""
    gen = torch.Generator().manual_seed(layer)
    x = torch.rand(1, 3, 32, 32, generator=gen)
    features = truncate(resnet8, layer)
    masks = patch_masks(32, 32, patch=3, stride=3)
    top, left, (h, w) = crop_boxes(receptive_field(features), masks)
    for k in (0, 5, 60, 120):  # a corner, the top border, the middle, the bottom-right corner
        decoy = torch.where(masks[k], torch.rand(1, 3, 32, 32, generator=gen), x)
        with torch.no_grad():
            full = (features(decoy) - features(x)).abs()
            t, l = int(top[k]), int(left[k])
            crop = (features(decoy[..., t:t + h, l:l + w]) - features(x[..., t:t + h, l:l + w])).abs()
        assert full.sum() > 0
        torch.testing.assert_close(crop.sum(), full.sum(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(crop.amax(), full.amax(), rtol=1e-5, atol=1e-6)


def test_the_solvers_copy_folds_batch_norm_and_computes_the_same_layer(resnet8):
    features = truncate(resnet8, 5)
    fast = nets.fast_copy(features)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in features.modules()) == 6  # the original is left alone
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(fast(x), features(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [3, 4])
def test_cropped_and_whole_image_solvers_agree(resnet8, layer):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    options = dict(patch=3, stride=14, steps=10, progress=False)  # corners, borders and the middle
    cropped = generate_decoys(resnet8, x, layer, 0.3, **options)
    whole = generate_decoys(resnet8, x, layer, 0.3, crop=False, **options)
    torch.testing.assert_close(cropped.decoys, whole.decoys, atol=1e-4, rtol=0)
    assert cropped.violation_rate == whole.violation_rate == 0.0
    assert all(p.grad is None for p in resnet8.parameters())  # the solver differentiates δ alone


def test_the_decoy_cache_solves_each_problem_once(conv_net, images):
    cache = {}
    first = DecoyEnhanced(conv_net, layer=1, eps=0.05, cache=cache, **FAST)
    second = DecoyEnhanced(conv_net, base="integrated_gradients", base_options={"n_steps": 4}, layer=1, eps=0.05,
                           cache=cache, **FAST)
    found = first.make_decoys(images)
    assert second.make_decoys(images) is found and len(cache) == 1
    second.make_decoys(images[:1])  # other images
    DecoyEnhanced(conv_net, layer=1, eps=0.1, cache=cache, **FAST).make_decoys(images)  # another ε
    changed = nn.Sequential(*[m for m in conv_net]).eval()
    changed[0] = nn.Conv2d(3, 4, 3, padding=1)  # another F_ℓ
    DecoyEnhanced(changed, layer=1, eps=0.05, cache=cache, **FAST).make_decoys(images)
    assert len(cache) == 4


def test_batched_and_mask_at_a_time_solvers_agree(conv_net, images):
    batched = generate_decoys(conv_net, images, layer=1, eps=0.05, **FAST)
    loop = generate_decoys_loop(conv_net, images, layer=1, eps=0.05, **FAST)
    assert torch.allclose(batched.decoys, loop.decoys, atol=1e-5)
    assert torch.equal(batched.feasible, loop.feasible)


@pytest.mark.parametrize("box, high, low", [(None, 1.0, 0.0), (0.3, 0.8, 0.2)])
def test_pixels_that_layer_l_ignores_go_to_the_bounds(box, high, low):
    """Known answer: F_0(x) = x ⊙ keep with keep = 1 on the left half only. A patch in the right half
    is free (to the range or the box); a patch in the left half may move by ε = 0.1 at most."""
    keep = torch.zeros(1, 1, 4, 4)
    keep[..., :2] = 1
    model = nn.Sequential(Keep(keep), nn.Flatten(), nn.Linear(16, 2)).eval()
    x = torch.full((1, 1, 4, 4), 0.5)
    result = generate_decoys(model, x, layer=0, eps=0.1, patch=2, box=box, steps=100, progress=False)
    for k, (mask, s) in enumerate(zip(result.masks, result.signs)):
        patch = result.decoys[0, k][mask]
        right = bool(mask[0, :, 2:].any())
        want = (high if s > 0 else low) if right else 0.5 + 0.1 * s
        assert torch.allclose(patch, torch.full_like(patch, want), atol=0.01), (k, patch, want)


def test_verification_catches_each_kind_of_violation(conv_net, images):
    result = generate_decoys(conv_net, images[:1], layer=1, eps=0.05, **FAST)
    decoys = result.decoys.clone()
    decoys[0, 0, :, 5, 5] += 0.01  # outside the first patch (rows, columns 0..2)
    decoys[0, 1][result.masks[1].expand(3, -1, -1)] = 1.0  # far beyond ε at layer ℓ
    decoys[0, 2] = decoys[0, 2] * 0 - 0.1 * result.masks[2]  # out of the pixel range
    feasible, distance = verify_decoys(conv_net, images[:1], decoys, result.masks, layer=1, eps=0.05)
    assert feasible[0, :3].tolist() == [False, False, False] and feasible[0, 3:].all()
    assert distance[0, 1] > 0.05
    feasible, _ = verify_decoys(conv_net, images[:1], result.decoys, result.masks, layer=1, eps=0.05, box=1e-3)
    assert not feasible.all()  # the decoys moved more than a tiny box allows


def test_constant_decoys_fill_the_patch_with_the_mean_colour(conv_net, images):
    result = constant_decoys(conv_net, images, layer=1, eps=0.05, patch=3)
    assert result.decoys.shape == (2, 4, 3, 6, 6) and (result.signs == 0).all()
    mean = images.mean((2, 3))
    for k, mask in enumerate(result.masks):
        assert torch.allclose(result.decoys[:, k][..., mask[0]], mean[..., None].expand(2, 3, 9))
        assert torch.equal(result.decoys[:, k][..., ~mask[0]], images[..., ~mask[0]])


def test_patches_cover_every_pixel():
    masks = patch_masks(32, 32, patch=3)
    assert masks.shape == (121, 1, 32, 32)  # starts 0, 3, …, 27 and the border window at 29
    assert (masks.flatten(1).sum(1) == 9).all() and masks.any(0).all()
    assert len(patch_masks(32, 32, patch=3, stride=1)) == 30 * 30


def test_range_and_mean_aggregation():
    maps = torch.tensor([[1.0, -2.0], [3.0, 0.0], [2.0, 5.0]]).view(1, 3, 2)  # 3 decoys, 2 features
    assert decoy_range(maps).tolist() == [[2.0, 7.0]]
    assert decoy_mean(maps).tolist() == [[2.0, 1.0]]
    same = torch.randn(2, 1, 3, 4, 4).expand(2, 5, 3, 4, 4)
    assert (decoy_range(same) == 0).all() and torch.allclose(decoy_mean(same), same[:, 0])


def test_decoy_enhanced_gradient_of_a_linear_model():
    """The gradient of a linear model is the same for every decoy: range 0 (the paper's A7), mean = the weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x = torch.rand(2, 3, 2, 2)
    for kind in ("optimised", "constant"):
        method = DecoyEnhanced(model, layer=1, eps=0.5, patch=1, decoys=kind, steps=5, progress=False)
        assert torch.equal(method.attribute(x, target=1), torch.zeros_like(x))
        assert method.decoy_set.decoys.shape[1] == (8 if kind == "optimised" else 4)
    mean = DecoyEnhanced(model, layer=1, eps=0.5, patch=1, aggregation="mean", steps=5, progress=False)
    w = model[1].weight.detach()
    predicted = model(x).argmax(1)
    assert torch.allclose(mean.attribute(x), w[predicted].view(2, 3, 2, 2), atol=1e-6)  # target: the prediction


def test_decoy_enhanced_is_seeded_and_leaves_the_global_rng_alone(conv_net, images):
    method = DecoyEnhanced(conv_net, base="smoothgrad", base_options={"samples": 2}, layer=1, eps=0.05, **FAST)
    state = torch.random.get_rng_state()
    first = method.attribute(images[:1], target=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first, method.attribute(images[:1], target=0))
    assert first.shape == images[:1].shape and (first >= 0).all() and first.sum() > 0
    assert method.decoy_set.violation_rate == 0.0
    both = method.attribute(images, target=0)  # an image's map does not depend on the other images
    assert torch.allclose(both[:1], first, atol=1e-6)


def test_the_seed_is_the_base_methods_noise_seed(conv_net, images):
    opts = dict(base="smoothgrad", layer=1, eps=0.05, **FAST)
    three = DecoyEnhanced(conv_net, seed=3, base_options={"samples": 2}, **opts)
    z = three.attribute(images[:1], target=0)
    decoys = three.decoy_set.decoys[0]
    want = baselines.make("smoothgrad", conv_net, samples=2, seed=3).attribute(decoys, target=0)
    assert torch.allclose(z, decoy_range(want[None]), atol=1e-6)
    same = DecoyEnhanced(conv_net, base_options={"samples": 2, "seed": 3}, **opts)
    assert torch.equal(same.attribute(images[:1], target=0), z)
    four = DecoyEnhanced(conv_net, seed=4, base_options={"samples": 2}, **opts)
    assert not torch.allclose(four.attribute(images[:1], target=0), z)
    with pytest.raises(ValueError, match="two seeds"):
        DecoyEnhanced(conv_net, seed=3, base_options={"samples": 2, "seed": 4}, **opts)
    gradient = DecoyEnhanced(conv_net, layer=1, eps=0.05, seed=3, **FAST)  # draws no noise: no seed option
    assert torch.equal(gradient.attribute(images[:1], target=0),
                       DecoyEnhanced(conv_net, layer=1, eps=0.05, **FAST).attribute(images[:1], target=0))


def test_postprocess_known_answer():
    values = torch.arange(100.0).view(1, 10, 10)
    maps = torch.stack([-values, values / 2], 1)  # |·| then max over channels gives `values`
    cap = 94.05  # the 95th percentile of 0..99 with linear interpolation
    out = postprocess(maps)
    assert out.shape == (1, 10, 10)
    assert torch.allclose(out, values.clamp(max=cap) / cap)
    assert (postprocess(torch.full((2, 3, 4, 4), -2.0)) == 0).all()  # a constant map scales to 0


def test_layers_by_index_and_name(conv_net):
    named = nn.Sequential()
    named.add_module("conv", nn.Conv2d(1, 1, 1))
    named.add_module("relu", nn.ReLU())
    assert layer_index(named, "relu") == 1 and layer_index(conv_net, -1) == 3
    assert layer_index(named, None) == 1  # the default: the first ReLU
    assert len(truncate(conv_net, 1)) == 2


def test_bad_inputs_say_what_to_do(conv_net, images):
    with pytest.raises(ValueError, match="shaped"):
        generate_decoys(conv_net, images[0], layer=1, eps=0.1)
    with pytest.raises(ValueError, match="lie in"):
        generate_decoys(conv_net, images + 1, layer=1, eps=0.1)
    with pytest.raises(ValueError, match="NaN"):
        generate_decoys(conv_net, images * torch.nan, layer=1, eps=0.1)
    with pytest.raises(ValueError, match="eps must be > 0"):
        DecoyEnhanced(conv_net, layer=1, eps=0)
    with pytest.raises(ValueError, match="larger than"):
        generate_decoys(conv_net, images, layer=1, eps=0.1, patch=7)
    with pytest.raises(ValueError, match="unknown layer"):
        DecoyEnhanced(conv_net, layer=9)
    with pytest.raises(ValueError, match="unknown layer"):
        DecoyEnhanced(conv_net, layer="conv9")
    with pytest.raises(ValueError, match="unknown attribution method"):
        DecoyEnhanced(conv_net, base="magic", layer=1)
    with pytest.raises(ValueError, match="unknown aggregation"):
        DecoyEnhanced(conv_net, layer=1, aggregation="median")
    with pytest.raises(ValueError, match="unknown decoys"):
        DecoyEnhanced(conv_net, layer=1, decoys="blurred")
    with pytest.raises(ValueError, match="nn.Sequential"):
        DecoyEnhanced(nn.Module(), layer=1)
    with pytest.raises(ValueError, match="model.eval()"):
        DecoyEnhanced(nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)), layer=1)
    with pytest.raises(ValueError, match="no nn.ReLU"):
        DecoyEnhanced(nn.Sequential(nn.Flatten(), nn.Linear(108, 3)))
    with pytest.raises(ValueError, match="box"):
        generate_decoys(conv_net, images, layer=1, eps=0.1, box=-1.0)
    with pytest.raises(ValueError, match="maps"):
        postprocess(torch.zeros(4))

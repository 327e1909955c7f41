import numpy as np
import pytest
import torch

from salbook import data, zoo
from salbook.grids import mpe as grid
from salbook.methods import mpe_table
from salbook.yardsticks.localisation import grabcut_foreground

MODEL = "mnist-cnn2"


def test_table_job_is_the_table_and_is_cached():
    model = zoo.get(MODEL, "smoke").model
    table, seconds = grid.table(MODEL, "smoke", 300)
    direct = mpe_table(model, data.mnist("train").x[:300], progress=False)
    assert torch.equal(table.counts, direct.counts) and table.input_shape == direct.input_shape == (1, 28, 28)
    torch.testing.assert_close(table.sums, direct.sums)
    again, seconds_again = grid.table(MODEL, "smoke", 300)
    assert seconds_again == seconds and torch.equal(again.sums, table.sums)  # from the cache


def test_test_probs_job():
    probs = grid.test_probs(MODEL, "smoke")
    test = data.mnist("test")
    assert probs.shape == (len(test.y), 10)
    torch.testing.assert_close(probs[:50], zoo.predict_proba(zoo.get(MODEL, "smoke").model, test.x[:50]))


def test_jobs_refuse_other_weights():
    with pytest.raises(ValueError, match="model changed"):
        grid.table_job(MODEL, "smoke", 10, weights="0" * 64)


def test_object_masks_job():
    masks = grid.object_masks([5, 2])
    assert np.array_equal(masks, grabcut_foreground(data.cifar10("test").x[[5, 2]]))
    assert np.array_equal(grid.object_masks([2])[0], masks[1])
    assert grid.object_masks([]).shape == (0, 32, 32)

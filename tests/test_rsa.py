"""RSMs as rsatoolbox RDMs, and the tree's category RDM (rsatoolbox is installed by the test extra)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rsatoolbox.rdm import RDMs, compare

import saxe
from saxe.rsa import rsm_to_rdm, to_rdms, tree_category_rdm


def test_rdm_is_the_squared_distance_between_hidden_representations():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((3, 8, 5))  # (epochs, items, hidden units)
    G = h @ np.swapaxes(h, 1, 2)
    D = rsm_to_rdm(G)
    direct = ((h[:, :, None, :] - h[:, None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(D, direct, rtol=1e-12, atol=1e-12 * np.abs(direct).max())
    assert np.all(D >= 0) and np.all(np.diagonal(D, axis1=1, axis2=2) == 0)


def test_tree_category_rdm_counts_levels_to_the_common_ancestor():
    D = tree_category_rdm(3, 2)
    assert D.shape == (8, 8) and D[0, 1] == 1 and D[0, 2] == 2 and D[0, 4] == 3 and D[3, 2] == 1
    assert np.array_equal(D, D.T) and not np.diagonal(D).any()


def test_model_rdms_over_training_approach_the_tree():
    X, Y = saxe.generate_hsd(n_features=1000, rng=0)
    net = saxe.LNNet(8, 30, 1000).double()
    saxe.initializer_(net, 1e-12, generator=torch.Generator().manual_seed(0))
    rec = saxe.train(net, X, Y, 250, 100.0 * np.sqrt(0.1))
    model = to_rdms(rec.rsms[1:], saxe.ITEM_NAMES, epochs=range(1, 251))
    assert model.n_rdm == 250 and model.pattern_descriptors["item"] == list(saxe.ITEM_NAMES)
    assert model.rdm_descriptors["epoch"][0] == 1
    ideal = RDMs(tree_category_rdm()[None], pattern_descriptors={"item": list(saxe.ITEM_NAMES)})
    corr = compare(model, ideal, method="corr").ravel()
    assert corr[-1] > 0.9 and corr[-1] > corr[50]  # the learned representation is the tree's
    with pytest.raises(ValueError, match="item_names"):
        to_rdms(rec.rsms[:3], ["a", "b"])

"""A faithful copy of the Neuromatch W1D2 tutorial 3 code (deep linear networks), kept as a reference.

Copied from the tutorial's helper cells and exercise solutions so that tests and benchmarks can compare
:mod:`saxe` with the original arithmetic. The logic is verbatim; the only changes are:

* ``net_svd`` builds its identity in the weights' dtype (the original's ``torch.eye(in_dim)`` is float32, which
  makes the float64 comparisons the tests need impossible; for float32 models it is the same matrix);
* docstrings are shortened and the plotting/widget code is left out;
* ``sample_from_tree`` keeps the tutorial's use of the *global* ``np.random`` state (callers seed it);
* the tutorial's ``add_feature`` (which ignored its argument and appended to a global ``tree_features``) and
  ``generate_hsd`` (global state, fixed sizes) are not copied: :mod:`saxe.data` replaces them.

Do not "fix" anything here: its value is that it behaves exactly like the tutorial, including the
record off-by-one of ``train`` (loss/RSM/prediction before each update, SVD after it).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn, optim

__all__ = ["LNNet", "LRNet", "build_tree", "sample_from_tree", "linear_regression", "net_svd", "net_rsm",
           "initializer_", "train"]


def build_tree(n_levels, n_branches, probability, to_np_array=True):
    """Builds tree (tutorial helper, verbatim)."""
    assert 0.0 <= probability <= 1.0
    tree = {}
    tree["level"] = [0]
    for i in range(1, n_levels + 1):
        tree["level"].extend([i] * (n_branches**i))
    tree["pflip"] = [probability] * len(tree["level"])
    tree["parent"] = [None]
    k = len(tree["level"]) - 1
    for j in range(k // n_branches):
        tree["parent"].extend([j] * n_branches)
    if to_np_array:
        tree["level"] = np.array(tree["level"])
        tree["pflip"] = np.array(tree["pflip"])
        tree["parent"] = np.array(tree["parent"])
    return tree


def sample_from_tree(tree, n):
    """Generates n samples from a tree (tutorial helper, verbatim; uses the global ``np.random``)."""
    items = [i for i, v in enumerate(tree["level"]) if v == max(tree["level"])]
    n_items = len(items)
    x = np.zeros(shape=(n, n_items))
    rand_temp = np.random.rand(n, len(tree["pflip"]))
    flip_temp = np.repeat(tree["pflip"].reshape(1, -1), n, 0)
    samp = (rand_temp > flip_temp) * 2 - 1
    for i in range(n_items):
        j = items[i]
        prop = samp[:, j]
        while tree["parent"][j] is not None:
            j = tree["parent"][j]
            prop = prop * samp[:, j]
        x[:, i] = prop.T
    return x


def linear_regression(X, Y):
    """Analytical linear regression (tutorial helper, verbatim): ``W = Y Xᵀ (X Xᵀ)⁻¹``."""
    assert isinstance(X, np.ndarray)
    assert isinstance(Y, np.ndarray)
    M, Dx = X.shape
    N, Dy = Y.shape
    assert Dx == Dy
    W = Y @ X.T @ np.linalg.inv(X @ X.T)
    return W


def net_svd(model, in_dim):
    """SVD of the product of the model's weights (tutorial helper; identity in the weights' dtype)."""
    W_tot = torch.eye(in_dim, dtype=next(iter(model.parameters())).dtype)
    for weight in model.parameters():
        W_tot = weight.detach() @ W_tot
    U, SIGMA, V = torch.svd(W_tot)
    return U, SIGMA, V


def net_rsm(h):
    """Representational similarity matrix (tutorial helper, verbatim)."""
    rsm = h @ h.T
    return rsm


def initializer_(model, gamma=1e-12):
    """In-place re-initialisation of weights (tutorial helper, verbatim; uses torch's global RNG)."""
    for weight in model.parameters():
        n_out, n_in = weight.shape
        sigma = gamma / math.sqrt(n_in + n_out)
        nn.init.normal_(weight, mean=0.0, std=sigma)


class LNNet(nn.Module):
    """A linear neural net with one hidden layer (tutorial, verbatim)."""

    def __init__(self, in_dim, hid_dim, out_dim):
        super().__init__()
        self.in_hid = nn.Linear(in_dim, hid_dim, bias=False)
        self.hid_out = nn.Linear(hid_dim, out_dim, bias=False)

    def forward(self, x):
        hid = self.in_hid(x)  # Hidden activity
        out = self.hid_out(hid)  # Output (prediction)
        return out, hid


class LRNet(nn.Module):
    """A linear neural net with zero hidden layers (tutorial bonus section, verbatim)."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.in_out = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x):
        out = self.in_out(x)  # Output (Prediction)
        return out


def train(model, inputs, targets, n_epochs, lr, illusory_i=0):
    """The tutorial's training loop (verbatim).

    Returns ``losses`` (n,), ``modes`` (n, in_dim), ``rs_mats`` (n, P, N_hid), ``illusions`` (n,). Note the
    tutorial's record convention: ``losses[i]``, ``rs_mats[i]`` and ``illusions[i]`` come from the forward
    pass *before* update i (weights after i updates), ``modes[i]`` from the weights *after* update i
    (i + 1 updates).
    """
    in_dim = inputs.size(1)

    losses = np.zeros(n_epochs)  # Loss records
    modes = np.zeros((n_epochs, in_dim))  # Singular values (modes) records
    rs_mats = []  # Representational similarity matrices
    illusions = np.zeros(n_epochs)  # Prediction for the given feature

    optimizer = optim.SGD(model.parameters(), lr=lr)
    criterion = nn.MSELoss()

    for i in range(n_epochs):
        optimizer.zero_grad()
        predictions, hiddens = model(inputs)
        loss = criterion(predictions, targets)
        loss.backward()
        optimizer.step()

        # Section 2 Singular value decomposition
        U, Σ, V = net_svd(model, in_dim)

        # Section 3 calculating representational similarity matrix
        RSM = net_rsm(hiddens.detach())

        # Section 4 network prediction of illusory_i inputs for the last feature
        pred_ij = predictions.detach()[illusory_i, -1]

        # Logging (recordings)
        losses[i] = loss.item()
        modes[i] = Σ.detach().numpy()
        rs_mats.append(RSM.numpy())
        illusions[i] = pred_ij.numpy()

    return losses, modes, np.array(rs_mats), illusions

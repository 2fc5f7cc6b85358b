"""Bias-free linear networks, the tutorial's initialiser and a decoupled (theory-exact) initialiser.

Weights are stored as torch's ``nn.Linear.weight`` (out_features, in_features); the end-to-end map is
``W_tot = W_L ⋯ W_1`` (N_out, N_in) and the output for inputs X (P, N_in) is ``X W_totᵀ``. ``depth`` L is the
number of weight matrices (``LNNet``: 2, ``LRNet``: 1).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .errors import check_nonnegative, check_positive_int

__all__ = ["LNNet", "DeepLNNet", "LRNet", "init_sigma", "initializer_", "decoupled_init_", "balanced_init_", "weights",
           "w_tot", "make_net"]


class LNNet(nn.Module):
    """The tutorial's linear network with one hidden layer and no biases; ``forward(x) -> (out, hid)``."""

    def __init__(self, in_dim, hid_dim, out_dim):
        super().__init__()
        in_dim, hid_dim, out_dim = (check_positive_int(n, v) for n, v in
                                    (("in_dim", in_dim), ("hid_dim", hid_dim), ("out_dim", out_dim)))
        self.in_hid = nn.Linear(in_dim, hid_dim, bias=False)
        self.hid_out = nn.Linear(hid_dim, out_dim, bias=False)

    def forward(self, x):
        hid = self.in_hid(x)  # hidden activity
        out = self.hid_out(hid)  # output (prediction)
        return out, hid


class DeepLNNet(nn.Module):
    """A bias-free linear network with any number (≥ 1) of hidden layers.

    ``forward(x) -> (out, hiddens)`` where ``hiddens`` is a tuple with the activity of every hidden layer,
    first hidden layer first.
    """

    def __init__(self, in_dim, hid_dims: Sequence[int], out_dim):
        super().__init__()
        if isinstance(hid_dims, int) or not isinstance(hid_dims, Sequence) or len(hid_dims) == 0:
            raise ValueError(f"hid_dims must be a non-empty sequence of hidden widths, got {hid_dims!r}")
        sizes = [check_positive_int("in_dim", in_dim)]
        sizes += [check_positive_int(f"hid_dims[{i}]", h) for i, h in enumerate(hid_dims)]
        sizes.append(check_positive_int("out_dim", out_dim))
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        hiddens = []
        for layer in self.layers[:-1]:
            x = layer(x)
            hiddens.append(x)
        return self.layers[-1](x), tuple(hiddens)


class LRNet(nn.Module):
    """The tutorial's zero-hidden-layer linear network (linear regression); ``forward(x) -> out``."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.in_out = nn.Linear(check_positive_int("in_dim", in_dim), check_positive_int("out_dim", out_dim),
                                bias=False)

    def forward(self, x):
        return self.in_out(x)


def make_net(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Module:
    """``LRNet`` for no hidden layer, ``LNNet`` for one, ``DeepLNNet`` for more."""
    hidden = list(hidden)
    if not hidden:
        return LRNet(in_dim, out_dim)
    if len(hidden) == 1:
        return LNNet(in_dim, hidden[0], out_dim)
    return DeepLNNet(in_dim, hidden, out_dim)


def weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight matrices of a bias-free linear net in forward order ``[W_1, …, W_L]``."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module (e.g. saxe.LNNet), got {type(model).__name__}: "
                         f"{model!r:.60}")
    params: list[torch.Tensor] = list(model.parameters())
    if not params:
        raise ValueError(f"model must have weight matrices, got a {type(model).__name__} without parameters")
    for i, w in enumerate(params):
        if w.dim() != 2:
            raise ValueError(f"model must be a bias-free linear net (2-D weights only), parameter {i} has shape "
                             f"{tuple(w.shape)}")
    for i, (a, b) in enumerate(zip(params[:-1], params[1:])):
        if b.shape[1] != a.shape[0]:
            raise ValueError(f"model weights must chain: W_{i + 2} expects {b.shape[1]} inputs but W_{i + 1} "
                             f"has {a.shape[0]} outputs")
    return params


def w_tot(model: nn.Module, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``W_tot = W_L ⋯ W_1`` (N_out, N_in), detached; computed in ``dtype`` if given."""
    ws = [w.detach() if dtype is None else w.detach().to(dtype) for w in weights(model)]
    out = ws[0]
    for w in ws[1:]:
        out = w @ out
    return out


def as_torch_generator(generator: torch.Generator | None) -> torch.Generator:
    """``generator`` itself, or for ``None`` a fresh generator seeded from OS entropy — never torch's global RNG."""
    if generator is None:
        gen = torch.Generator()
        gen.seed()  # a non-deterministic seed from the OS, as np.random.default_rng() draws one
        return gen
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def init_sigma(gamma: float, n_in: int, n_out: int) -> float:
    """The tutorial's init rule: the standard deviation ``γ/√(n_in + n_out)`` of an (n_out, n_in) weight."""
    return gamma / math.sqrt(n_in + n_out)


def initializer_(model: nn.Module, gamma=1e-12, generator: torch.Generator | None = None) -> nn.Module:
    """Re-initialise every weight in place: ``W ~ N(0, (γ / √(n_in + n_out))²)`` (the tutorial's rule).

    ``generator`` makes it reproducible; ``None`` draws from a fresh generator seeded from OS entropy (torch's
    global RNG is never used). Returns ``model``.
    """
    params = weights(model)
    gamma = check_nonnegative("gamma", gamma)
    generator = as_torch_generator(generator)
    with torch.no_grad():
        for weight in params:
            n_out, n_in = weight.shape
            sigma = init_sigma(gamma, n_in, n_out)
            if sigma == 0:
                weight.zero_()
            else:
                weight.normal_(mean=0.0, std=sigma, generator=generator)
    return model


def decoupled_init_(model: nn.Module, U, V, a0, generator: torch.Generator | None = None) -> nn.Module:
    """Balanced, decoupled initialisation: each mode α starts at strength ``a0[α]`` exactly.

    ``W_1 = R_1 diag(u) Vᵀ``, ``W_l = R_l diag(u) R_{l−1}ᵀ``, ``W_L = U diag(u) R_{L−1}ᵀ`` with u = a0^{1/L} and
    random orthonormal ``R_l`` (N_l × r), so ``W_tot = U diag(a0) Vᵀ`` and every layer carries the same
    strength; the scalar mode theory (:func:`theory.mode_strength_discrete`) is then exact for SGD.
    ``U`` (N_out, r) and ``V`` (N_in, r) are the singular vectors of Σʸˣ (:func:`theory.io_svd`).
    """
    ws = weights(model)
    generator = as_torch_generator(generator)
    ref = ws[0]
    U = torch.as_tensor(U, dtype=ref.dtype)
    V = torch.as_tensor(V, dtype=ref.dtype)
    r = V.shape[1]
    a0 = torch.as_tensor(a0, dtype=torch.float64).expand(r)
    if U.shape != (ws[-1].shape[0], r) or V.shape != (ws[0].shape[1], r):
        raise ValueError(f"U must be ({ws[-1].shape[0]}, r) and V ({ws[0].shape[1]}, r) for this model, got "
                         f"U {tuple(U.shape)}, V {tuple(V.shape)}")
    if (a0 < 0).any() or not torch.isfinite(a0).all():
        raise ValueError(f"a0 must be finite and >= 0, got {a0.tolist()}")
    depth = len(ws)
    u = (a0 ** (1.0 / depth)).to(ref.dtype)
    frames = []
    for w in ws[:-1]:
        n = w.shape[0]
        if n < r:
            raise ValueError(f"decoupled_init_ needs hidden widths >= the number of modes r={r}, got {n}")
        g = torch.randn(n, r, generator=generator, dtype=torch.float64)
        frames.append(torch.linalg.qr(g)[0].to(ref.dtype))
    left = frames + [U]
    right = [V] + frames
    with torch.no_grad():
        for w, L, R in zip(ws, left, right):
            w.copy_((L * u) @ R.T)
    return model


def _orthonormal_columns(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """(n, k) float64 matrix with Haar-random orthonormal columns (k ≤ n)."""
    q, r = torch.linalg.qr(torch.randn(n, k, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))


def balanced_init_(model: nn.Module, lam: float, gamma: float = 1e-12,
                   generator: torch.Generator | None = None) -> nn.Module:
    r"""Re-initialise a depth-2 net in place to an exactly λ-balanced init: ``W₂ᵀW₂ − W₁W₁ᵀ = λ I_{N_h}``.

    λ ≥ 0: W₁ is drawn with the tutorial's rule (``N(0, (γ/√(N_in+N_h))²)``, as :func:`initializer_`), its SVD
    ``W₁ = O diag(σ) Rᵀ`` (σ padded with zeros to N_h) gives ``W₂ = R_out diag(√(σ² + λ)) Oᵀ`` with Haar-random
    orthonormal R_out (N_out × N_h). λ < 0: the mirror image (W₂ drawn, ``W₁ = O diag(√(σ₂² − λ)) R_inᵀ``).
    Built in float64, then copied into the model's dtype (float32 keeps the balance to ~1e-7 relative).
    λ > 0 needs N_out ≥ N_h, λ < 0 needs N_in ≥ N_h, λ = 0 needs min(N_in, N_h) ≤ N_out (the rank of D).

    Glossary: λ the balance (units of the squared weights, like s); γ the init scale; N_in, N_h, N_out the widths.
    Reference: Dominé et al., "From lazy to rich: exact learning dynamics in deep linear networks", ICLR 2025
    (λ-balanced initialisation); :mod:`theory.balanced` is its exact solution.
    """
    ws = weights(model)
    if len(ws) != 2:
        raise ValueError(f"model must have one hidden layer (two weight matrices) for balanced_init_, got {len(ws)}")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
        raise ValueError(f"lam must be a finite real number (the balance λ), got {lam!r}")
    gamma = check_nonnegative("gamma", gamma)
    generator = as_torch_generator(generator)
    (n_h, n_in), n_out = ws[0].shape, ws[1].shape[0]
    flip = lam < 0  # draw the output layer instead and build the input layer (mirror image)
    n_far, n_near = (n_in, n_out) if flip else (n_out, n_in)  # far: the built layer's outer width
    if (lam != 0 and n_far < n_h) or (lam == 0 and min(n_near, n_h) > n_far):
        side = "N_in" if flip else "N_out"
        raise ValueError(f"lam={lam!r} needs {side} >= N_h for an exactly λ-balanced init (W2ᵀW2 − W1W1ᵀ = λI has "
                         f"rank N_h), got N_in={n_in}, N_h={n_h}, N_out={n_out}")
    sigma = init_sigma(gamma, n_near, n_h)
    drawn = torch.randn(n_h, n_near, generator=generator, dtype=torch.float64) * sigma  # (N_h, outer) layout
    O, sv, _ = torch.linalg.svd(drawn, full_matrices=True)
    rows = torch.zeros(n_h, dtype=torch.float64)
    rows[: sv.numel()] = sv
    k = n_h if lam != 0 else min(n_h, n_far)
    built_sv = torch.sqrt(rows**2 + abs(lam))[:k]
    frame = _orthonormal_columns(n_far, k, generator)  # (outer, k)
    built = (frame * built_sv) @ O[:, :k].T  # (outer, N_h)
    with torch.no_grad():
        if flip:
            ws[1].copy_(drawn.T.to(ws[1].dtype))
            ws[0].copy_(built.T.to(ws[0].dtype))
        else:
            ws[0].copy_(drawn.to(ws[0].dtype))
            ws[1].copy_(built.to(ws[1].dtype))
    return model

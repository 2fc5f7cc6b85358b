r"""The lazy → rich transition of the tutorial's 8-30-10000 net: λ-balanced and random inits over γ, theory vs SGD.

For each init scale γ two inits are trained (``saxe.train``, float64, full-batch SGD on torch's mean MSE):

* **λ-balanced** (:func:`saxe.models.balanced_init_`): W₁ by the tutorial's rule, W₂ built so that
  ``W₂ᵀW₂ − W₁W₁ᵀ = λI`` with ``λ = γ²(N_out/(N_h+N_out) − N_in/(N_in+N_h))``, the expected λ of the random init;
  :mod:`theory.balanced` is exact for it (gradient flow; ``method='finite_lr'`` corrects the growth rates for SGD).
* **random** (:func:`saxe.initializer_`, the tutorial's rule): the same formula with the fitted λ
  (:func:`theory.balanced.measured_lambda`), an approximation: the conserved ``D − λI`` (relative size 0.53 for
  8-30-10000 at every γ) is ignored.
* **output-lazy** (``'balanced_lazy'``): λ-balanced with the same λ(γ) but W₁ drawn at ``LAZY_W1_GAMMA`` (≈ 0), so
  W₂ ≈ √λ·(orthonormal frame) and the init's function W₂W₁ ≈ 0. With the tutorial's rule a large γ is *not* lazy:
  the init's own output (‖W_tot(0)‖ ∝ γ² ≫ s) must be unlearned, which moves every weight by O(1) of itself. Here
  λ alone sets the regime *in time*: the function is learned through the fixed kernel, but afterwards the hidden
  units slowly re-point W₂ into the task's output directions (F's mode eigenvalue √(s² + λ²/4) exceeds the λ/2 of
  the random directions W₂ starts in, by ≈ s²/λ), so at convergence the NTK has changed by ≈ √(2r/N_h) (0.73 for
  r = 8, N_h = 30), not 0: with N_out ≫ N_h a random output frame is never lazy at t → ∞ (measured in
  bench/lazy_rich_table.py).
Reported per γ and init: λ, deviation, the lr used (the requested lr, lowered to ``STABLE_FRACTION`` × the stable bound
at the initial and at the predicted final weights when large γ needs it), the epochs, the theory-vs-training error
``max_t |σ_α^theory(t) − σ_α^SGD(t)| / s₁`` (σ the singular values of W_tot, on ``N_EVAL`` epochs and the first
``EARLY_EPOCHS``) for the flow, its first- and second-order SGD corrections (``method='first_order'``,
``'second_order'``, :mod:`theory.sgd_expansion`; NaN outside their domain), the finite-lr forms and SGD's modified
equation (``method='modified'``, :mod:`theory.modified_equation`, integrated from the init's own weights, so exact in
its order for random inits too, after the ``modified_exact_steps`` k₀ exact SGD steps a large init's transient
needs; NaN and −1 where it refuses), the same error of the flow form against the init's own exact
gradient flow (:func:`theory.exact_flow`, solve_ivp: ≈ 0 for λ-balanced inits, the imbalance's effect for random
ones), and the relative changes from t = 0 to the end of ``K_h`` (the RSM, X W₁ᵀW₁ Xᵀ) and of the NTK Θ
(:mod:`theory.ntk`), measured and predicted: ≈ 0 in the lazy regime (large γ), ≫ 1 in the rich one (small γ).

Glossary: γ init scale; λ balance (units of s); s₁ the top singular value of Σʸˣ = YᵀX; η = 2·lr/(P·N_out) per epoch;
t epochs. Reference: Dominé et al., "From lazy to rich: exact learning dynamics in deep linear networks", ICLR 2025,
arXiv:2409.14623; Braun et al., NeurIPS 2022.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import saxe
import theory
from saxe.models import balanced_init_
from theory.balanced import CORRECTED_ORDERS, balanced_solution, measured_lambda
from theory.ntk import ntk_relative_change, relative_change

__all__ = ["LazyRichRow", "lazy_rich", "lazy_rich_figure", "expected_lambda", "DEFAULT_GAMMAS", "STABLE_FRACTION",
           "CONVERGED_FRACTION", "N_EVAL", "EARLY_EPOCHS", "MAX_EPOCHS", "INITS", "LAZY_W1_GAMMA", "rows_as_dicts"]

INITS = ("balanced", "random", "balanced_lazy")
DEFAULT_GAMMAS = (1e-6, 1e-4, 1e-2, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0)
# lr is capped at this fraction of the stable bound (init and predicted final state): SGD then contracts well inside
# the stable region and η·max f < 1, which the finite-lr form needs.
STABLE_FRACTION = 0.5
# Training runs until the theory's W_tot is within this fraction of s₁ of its fixed point (learning is over).
CONVERGED_FRACTION = 1e-4
# Epochs on which theory and training are compared (evenly spaced; the closed form costs ~0.4 ms per epoch).
N_EVAL = 400
# ... plus every one of the first EARLY_EPOCHS epochs: a large init's own output is unlearned in a fast transient of a
# few steps, which an evenly spaced grid over a long run would step over.
EARLY_EPOCHS = 100
# W₁'s init scale for the output-lazy family: small enough that W₂W₁ ≈ 0 against s (O(1e-6·√λ)).
LAZY_W1_GAMMA = 1e-6
# Longest run (reduced engine ~0.1 ms per epoch): bounds the cost of a small lr.
MAX_EPOCHS = 200_000


@dataclass(frozen=True)
class LazyRichRow:
    """One (γ, init) run: see the module docstring for every field's meaning (errors in units of s₁)."""

    gamma: float
    init: str
    lam: float
    deviation: float
    lr: float
    n_epochs: int
    error_continuous: float
    error_finite_lr: float
    error_first_order: float
    error_second_order: float
    error_modified: float
    modified_exact_steps: int
    error_vs_flow: float
    rsm_change: float
    rsm_change_theory: float
    ntk_change: float
    ntk_change_theory: float


def expected_lambda(gamma: float, sizes: Sequence[int]) -> float:
    """E[tr(W₂ᵀW₂ − W₁W₁ᵀ)]/N_h = γ²(N_out/(N_h+N_out) − N_in/(N_in+N_h)), tutorial's rule, sizes (N_in, N_h, N_out)."""
    n_in, n_h, n_out = sizes
    return gamma**2 * (n_out / (n_h + n_out) - n_in / (n_in + n_h))


def _init(kind: str, gamma: float, sizes, seed: int) -> list[np.ndarray]:
    net = saxe.make_net(sizes[0], [sizes[1]], sizes[2]).double()
    gen = torch.Generator().manual_seed(seed)
    if kind in ("balanced", "balanced_lazy"):
        balanced_init_(net, expected_lambda(gamma, sizes), gamma=gamma if kind == "balanced" else LAZY_W1_GAMMA,
                       generator=gen)
    else:
        saxe.initializer_(net, gamma, generator=gen)
    return [w.detach().numpy().copy() for w in saxe.weights(net)]


def _epochs_to_converge(sol, s1: float) -> int:
    """First epoch (on a geometric grid) where the theory's M̄ is within CONVERGED_FRACTION·s₁ of M̄(∞)."""
    final = sol.mode_matrix(np.inf)
    grid = np.unique(np.geomspace(1.0, MAX_EPOCHS, 200).astype(int)).astype(float)
    gap = np.abs(sol.mode_matrix(grid) - final).max(axis=(-2, -1))
    done = np.flatnonzero(gap <= CONVERGED_FRACTION * s1)
    return int(grid[done[0]]) if done.size else MAX_EPOCHS


def _one(X, Y, kind: str, gamma: float, lr: float, seed: int, sizes, s1: float) -> LazyRichRow:
    w0 = _init(kind, gamma, sizes, seed)
    lam, dev = measured_lambda(*w0)
    approx = kind == "random"
    per_lr = theory.learning_rate_to_eta(1.0, X.shape[0], Y.shape[1])
    probe = balanced_solution(X, Y, w0, lr, approximate=approx)
    sharp = max(theory.sharpness(X, Y, w0), theory.sharpness(X, Y, list(probe.weights(np.inf))))
    lr_used = min(lr, STABLE_FRACTION * 2.0 / (per_lr * sharp))
    sols = {m: balanced_solution(X, Y, w0, lr_used, method=m, approximate=approx) for m in ("continuous", "finite_lr")}
    n = max(_epochs_to_converge(sol, s1) for sol in sols.values())
    for m in (*CORRECTED_ORDERS, "modified"):
        sols[m] = balanced_solution(X, Y, w0, lr_used, method=m, approximate=approx)
    net = saxe.make_net(sizes[0], [sizes[1]], sizes[2]).double()
    with torch.no_grad():
        for p, w in zip(saxe.weights(net), w0):
            p.copy_(torch.from_numpy(w))
    rec = saxe.train(net, X, Y, n, lr_used, engine="reduced")
    k = np.unique(np.concatenate([np.arange(min(n, EARLY_EPOCHS) + 1), np.linspace(0, n, N_EVAL).astype(int)]))
    errors = {}
    for m, sol in sols.items():
        try:
            sv = np.linalg.svd(sol.mode_matrix(k.astype(float)), compute_uv=False)[:, : rec.modes.shape[1]]
        except ValueError:
            if m not in (*CORRECTED_ORDERS, "modified"):
                raise
            errors[m] = float("nan")  # outside its domain (EXPANSION_MAX_GAP, MAX_ESTIMATE, the call limits)
            continue
        errors[m] = float(np.abs(sv - rec.modes[k]).max() / s1)
    # the init's own gradient flow (theory.state, solve_ivp): isolates the formula's error from the finite-lr one
    M_flow = theory.exact_flow(k.astype(float), theory.exact_state(X, Y, w0), sols["continuous"].tau)[0]
    sv_flow = np.linalg.svd(M_flow, compute_uv=False)
    sv_form = np.linalg.svd(sols["continuous"].mode_matrix(k.astype(float)), compute_uv=False)
    sol = sols["finite_lr"]
    rsm_th = sol.rsm(np.array([0.0, float(n)]))
    w_end = [w.detach().numpy() for w in saxe.weights(net)]
    return LazyRichRow(gamma=gamma, init=kind, lam=lam, deviation=dev, lr=lr_used, n_epochs=n,
                       error_continuous=errors["continuous"], error_finite_lr=errors["finite_lr"],
                       error_first_order=errors["first_order"], error_second_order=errors["second_order"],
                       error_modified=errors["modified"],
                       modified_exact_steps=(sols["modified"].exact_steps(k.astype(float))
                                             if np.isfinite(errors["modified"]) else -1),
                       error_vs_flow=float(np.abs(sv_form - sv_flow).max() / s1),
                       rsm_change=relative_change(rec.rsms[0], rec.rsms[-1]),
                       rsm_change_theory=relative_change(rsm_th[0], rsm_th[1]),
                       ntk_change=ntk_relative_change(X, *w0, *w_end),
                       ntk_change_theory=ntk_relative_change(X, *sol.weights(0.0), *sol.weights(float(n))))


def lazy_rich(gammas: Sequence[float] = DEFAULT_GAMMAS, *, lr: float = 100.0, seed: int = 0,
              inits: Sequence[str] = ("balanced", "random"), data: tuple | None = None) -> list[LazyRichRow]:
    r"""Train the tutorial net from λ-balanced and random inits at each γ and compare with :mod:`theory.balanced`.

    ``data`` (X, Y) defaults to the tutorial's ``saxe.generate_hsd(rng=0)`` (8 items, 10000 features); N_h = 30.
    ``lr`` is lowered per run where the stable bound requires (module docstring). Returns one
    :class:`LazyRichRow` per (γ, init). Reference: Dominé et al., ICLR 2025.
    """
    if not gammas or any(not (isinstance(g, (int, float)) and g > 0 and np.isfinite(g)) for g in gammas):
        raise ValueError(f"gammas must be a non-empty list of finite init scales > 0, got {gammas!r}")
    for kind in inits:
        if kind not in INITS:
            raise ValueError(f"inits must be among {INITS}, got {kind!r}")
    X, Y = saxe.generate_hsd(rng=0) if data is None else data
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    sizes = (X.shape[1], 30, Y.shape[1])
    s1 = float(theory.io_svd(X, Y)[1].max())
    return [_one(X, Y, kind, float(g), lr, seed, sizes, s1) for g in gammas for kind in inits]


def lazy_rich_figure(rows: Sequence[LazyRichRow], path: str | Path) -> Path:
    """RSM and NTK relative change vs γ (theory lines over measured markers, both inits); returns the PNG path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    for ax, what in zip(fig.subplots(1, 2), ("rsm", "ntk")):
        for kind, colour in (("balanced", "C0"), ("random", "C1"), ("balanced_lazy", "C2")):
            sel = sorted((r for r in rows if r.init == kind), key=lambda r: r.gamma)
            if not sel:
                continue
            g = [r.gamma for r in sel]
            ax.plot(g, [getattr(r, f"{what}_change_theory") for r in sel], "-", color=colour,
                    label=f"{kind}: λ-balanced theory")
            ax.plot(g, [getattr(r, f"{what}_change") for r in sel], "o", color=colour, mfc="none",
                    label=f"{kind}: SGD")
        ax.set(xscale="log", yscale="log", xlabel="init scale γ",
               ylabel=f"‖{'RSM' if what == 'rsm' else 'NTK'}(T) − ·(0)‖ / ‖·(0)‖",
               title=("hidden RSM" if what == "rsm" else "NTK") + " change over training")
        ax.axhline(1.0, color="0.7", lw=0.8)
    fig.axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    from .report import atomic_write

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", dpi=120)
    return path


def rows_as_dicts(rows: Sequence[LazyRichRow]) -> list[dict]:
    """The rows as plain dicts (for JSON/CSV)."""
    return [asdict(r) for r in rows]

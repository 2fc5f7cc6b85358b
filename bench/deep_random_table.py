"""Deep random init, a priori: predicted vs measured half-learning epochs over 32 seeds (a measurement script).

Setting (``saxe verify``'s deep3_random, extended to depth 4 and a second init scale): the tutorial's data
(``saxe.generate_hsd(rng=0)``, 8 one-hot items × 10000 features), hidden widths 30 (depth 3: [30, 30]; depth 4:
[30, 30, 30]), lr = 0.6 × ``theory.max_stable_lr(s[0], P, N_out, depth)``, γ chosen so that the old a priori
``theory.expected_initial_mode_strength(γ, sizes)`` equals a₀ (1e-4 as in verify, and 1e-6), init
``saxe.initializer_(net, γ, generator=torch.Generator().manual_seed(seed))``, seeds 0…31.

Measured: the exact theory state from each seed's actual weights (``theory.state.exact_state``; all seeds
iterated together with ``theory.state.sgd_step``), which equals float64 SGD to ~1e-11; the k-th largest singular
value of W_tot against s_k/2, first epoch reached. ``--check-train N`` confirms N seeds (depth 3, first a₀)
against real float64 training with ``saxe.train(engine='autograd')``. Predicted: ``theory.deep_init.
half_learning_distribution`` (no weights), and exact in law ``theory.half_learning_exact_law``. Old: the balanced
discrete map from the a priori a₀
(``theory.predictor(..., theory='scalar', a0=a₀)``).

    python bench/deep_random_table.py [--seeds 32] [--draws 512] [--law-draws 128] [--a0 1e-4 1e-6] [--check-train 2] [--decompose]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import saxe
import theory
from experiments.metrics import half_learning_epochs
from theory.deep_init import _groups, half_learning_distribution, half_learning_from_statistics, initial_statistics
from theory.state import exact_state, sgd_step

LR_FRACTION = 0.6  # as experiments/verify.py's DEEP3_LR_FRACTION
HIDDEN = 30
FRACTION = 0.5  # half-learning


def setting(depth: int, a0: float, s: np.ndarray, P: int, n_out: int):
    sizes = [8, *[HIDDEN] * (depth - 1), n_out]
    lr = LR_FRACTION * float(theory.max_stable_lr(s[0], P, n_out, depth=depth))
    gamma = (a0 / float(theory.expected_initial_mode_strength(1.0, sizes))) ** (1 / depth)
    return sizes, lr, gamma


def initial_weights(sizes, gamma, seed):
    net = saxe.make_net(sizes[0], sizes[1:-1], sizes[-1]).double()
    saxe.initializer_(net, gamma, generator=torch.Generator().manual_seed(seed))
    return net, [w.detach().numpy().copy() for w in saxe.weights(net)]


def measured(X, Y, s, sizes, lr, gamma, seeds, cap=10**6, eta=None) -> np.ndarray:
    """(seeds, r) first epoch at which the k-th singular value of the exact state's W_tot reaches s_k/2 (r = s.size:
    pass the leading s only for a target Y restricted to those modes; ``eta`` overrides lr's, which Y sets)."""
    eta = theory.learning_rate_to_eta(lr, *Y.shape) if eta is None else eta
    states = [exact_state(X, Y, initial_weights(sizes, gamma, seed)[1]) for seed in seeds]
    layers = [np.stack([st.layers[l] for st in states]) for l in range(len(sizes) - 1)]
    target = np.stack([st.target for st in states])
    out = np.full((len(seeds), s.size), np.inf)
    for k in range(cap):
        layers, M = sgd_step(layers, target, eta)
        sv = np.linalg.svd(M, compute_uv=False)[:, : s.size]
        out[(sv >= FRACTION * s) & np.isinf(out)] = k
        if np.isfinite(out).all():
            break
    return out


def decompose(X, Y, s, sizes, lr, gamma, seeds, T) -> None:
    """Where the model's error comes from, per mode (medians over seeds): the model run on each seed's *actual*
    initial statistics (its law left out) against the measured epochs T; and against the exact dynamics with the
    slower groups of modes removed from the target (modes 1…k, k the end of a near-degenerate group, so that no
    group is split: a split group would lose its order statistics, not a shared-layer effect)."""
    U, _, V = theory.io_svd(X, Y)
    eta = theory.learning_rate_to_eta(lr, *Y.shape)
    own = half_learning_from_statistics([initial_statistics(initial_weights(sizes, gamma, sd)[1], U, V)
                                         for sd in seeds], s, sizes, eta, FRACTION)
    print(f"\ndepth {len(sizes) - 1}, γ {gamma:.4g}: model on each seed's own statistics, and the dynamics without "
          "the slower groups")
    print("| mode | model (own stats) vs measured | without slower groups vs measured | model vs without them |")
    print("|---|---|---|---|")
    for G in _groups(s):
        k = int(G.max()) + 1  # modes 1…k: this group and the faster ones
        Yk = X @ np.linalg.pinv(X.T @ X) @ (V[:, :k] * s[:k]) @ U[:, :k].T  # Σʸˣ of modes 1…k only
        Tk = measured(X, Yk, s[:k], sizes, lr, gamma, seeds, eta=eta)
        for j in sorted(G):
            print(f"| {j + 1} | {np.median(own[:, j] / T[:, j]) - 1:+.3f} | {np.median(Tk[:, j] / T[:, j]) - 1:+.3f} "
                  f"| {np.median(own[:, j] / Tk[:, j]) - 1:+.3f} |")


def trained(X, Y, s, sizes, lr, gamma, seed, n_epochs) -> np.ndarray:
    net, _ = initial_weights(sizes, gamma, seed)
    rec = saxe.train(net, X, Y, n_epochs, lr, engine="autograd", record_rsm=False)
    return half_learning_epochs(np.asarray(rec.modes)[:, : s.size], s, FRACTION)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--draws", type=int, default=512)
    p.add_argument("--law-draws", type=int, default=128, help="draws of theory.half_learning_exact_law")
    p.add_argument("--a0", type=float, nargs="+", default=[1e-4, 1e-6])
    p.add_argument("--depths", type=int, nargs="+", default=[3, 4])
    p.add_argument("--check-train", type=int, default=2, help="seeds checked against saxe.train (0: none)")
    p.add_argument("--decompose", action="store_true", help="also the model's error, decomposed (see decompose)")
    args = p.parse_args()
    torch.set_num_threads(1)
    X, Y = (np.asarray(a, dtype=np.float64) for a in saxe.generate_hsd(rng=0))
    _, s, _ = theory.io_svd(X, Y)
    P, n_out = Y.shape
    print("| depth | a₀ (γ) | mode (s) | measured median | predicted median | rel. error | measured 10–90% "
          "| predicted 10–90% | exact law median | rel. error | old a priori |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    checks = []
    for depth in args.depths:
        for a0 in args.a0:
            sizes, lr, gamma = setting(depth, a0, s, P, n_out)
            eta = theory.learning_rate_to_eta(lr, P, n_out)
            t0 = time.perf_counter()
            T = measured(X, Y, s, sizes, lr, gamma, range(args.seeds))
            t1 = time.perf_counter()
            pred = half_learning_distribution(s, sizes, gamma, eta, fraction=FRACTION, n_draws=args.draws)
            t2 = time.perf_counter()
            law = theory.half_learning_exact_law(s, sizes, gamma, eta, fraction=FRACTION, n_draws=args.law_draws)
            t3 = time.perf_counter()
            old = theory.predictor(X, Y, lr, theory="scalar", depth=depth, a0=a0).time_to_learn(FRACTION)
            mq = np.quantile(T, [0.1, 0.5, 0.9], axis=0)
            for k in range(s.size):
                print(f"| {depth} | {a0:g} ({gamma:.4g}) | {k + 1} ({s[k]:.2f}) | {mq[1, k]:g} | {pred.median[k]:g} "
                      f"| {pred.median[k] / mq[1, k] - 1:+.3f} | {mq[0, k]:g}–{mq[2, k]:g} "
                      f"| {pred.quantiles[0, k]:g}–{pred.quantiles[-1, k]:g} | {law.median[k]:g} "
                      f"| {law.median[k] / mq[1, k] - 1:+.3f} | {old[k]:g} |")
            print(f"<!-- depth {depth}, a0 {a0:g}: lr {lr:.5g}, η {eta:.4g}; measured {t1 - t0:.1f} s, "
                  f"predicted {t2 - t1:.1f} s, exact law {t3 - t2:.1f} s -->")
            if args.decompose:
                decompose(X, Y, s, sizes, lr, gamma, range(args.seeds), T)
            if depth == args.depths[0] and a0 == args.a0[0]:
                for seed in range(args.check_train):
                    tr = trained(X, Y, s, sizes, lr, gamma, seed, int(np.max(T[seed])) + 2)
                    checks.append((seed, tr, T[seed]))
    for seed, tr, ex in checks:
        same = np.array_equal(tr, ex)
        print(f"\nsaxe.train (float64, autograd) seed {seed}: {tr.astype(int).tolist()} vs exact state "
              f"{ex.astype(int).tolist()}: {'equal' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()

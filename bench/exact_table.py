"""Measure the default predictor against an independent float64 torch loop (a measurement, not a speed test).

For each case the network is trained by plain ``torch.optim.SGD`` on ``nn.MSELoss`` (float64, autograd, nothing
from saxe in the loop) and compared epoch by epoch, in chunks (no (T, N_out, N_in) array is ever held), with
``theory.predictor(X, Y, lr, weights=w0)`` at its defaults (the exact theory state, SGD map). Errors are maxima over
epochs: modes and W_tot over s_max, loss over L(0), outputs (X W_totᵀ) over s_max·max‖x‖. ``floor`` is the same
modes metric between the plain loop and ``saxe.train(engine='reduced')`` (two float64 trainings). Cases follow the
issue "exact on real data": the tutorial's data (8 items, 10000 features) at depth 2 over init scales and torch's
default init, bottleneck widths on 8 items × 100 features, depth 3 and 4 at γ = 1e-3 and 1.

    python bench/exact_table.py [--features 10000] [--max-epochs 100000] [--json out.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import saxe
import theory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from plain_sgd import plain_steps  # noqa: E402  (the independent float64 loop the tests use)

CHUNK = 2000


def init(X, Y, hidden, gamma, seed=0):
    if gamma == "default":
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = saxe.make_net(X.shape[1], hidden, Y.shape[1]).double()
    else:
        net = saxe.make_net(X.shape[1], hidden, Y.shape[1]).double()
        saxe.initializer_(net, gamma, generator=torch.Generator().manual_seed(seed))
    return [w.detach().numpy().copy() for w in saxe.weights(net)]


def compare(X, Y, w0, lr, n_epochs):
    pred = theory.predictor(X, Y, lr, weights=w0)
    s_max, x_max = pred.s[0], np.linalg.norm(X, axis=1).max()
    err = dict(modes=0.0, loss=0.0, w_tot=0.0, outputs=0.0)
    modes_meas, l0 = [], None
    steps = plain_steps(X, Y, w0, lr, n_epochs)
    for start in range(0, n_epochs + 1, CHUNK):
        chunk = list(itertools.islice(steps, CHUNK))
        ts = np.array([c[0] for c in chunk])
        W, L = np.array([c[1] for c in chunk]), np.array([c[2] for c in chunk])
        l0 = L[0] if l0 is None else l0
        sv = np.linalg.svd(W, compute_uv=False)[:, : pred.s.size]
        modes_meas.append(sv)
        err["modes"] = max(err["modes"], np.abs(pred.modes(ts) - sv).max() / s_max)
        err["loss"] = max(err["loss"], np.abs(pred.loss(ts) - L).max() / l0)
        err["w_tot"] = max(err["w_tot"], np.abs(pred.w_tot(ts) - W).max() / s_max)
        err["outputs"] = max(err["outputs"], np.abs(pred.outputs(ts) - X @ np.swapaxes(W, 1, 2)).max() / (s_max * x_max))
    modes_meas = np.concatenate(modes_meas)
    net = saxe.make_net(X.shape[1], [w.shape[0] for w in w0[:-1]], Y.shape[1]).double()
    with torch.no_grad():
        for p, w in zip(saxe.weights(net), w0):
            p.copy_(torch.as_tensor(w))
    twin = saxe.train(net, X, Y, n_epochs, lr, engine="reduced", record_rsm=False)
    err["floor"] = np.abs(twin.modes - modes_meas).max() / s_max
    learned = int(np.sum(modes_meas[-1] >= 0.5 * pred.s))
    return err, learned, pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=10000)
    ap.add_argument("--max-epochs", type=int, default=100_000)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tut = saxe.generate_hsd(n_features=args.features, rng=0)
    small = saxe.generate_hsd(n_features=100, rng=0)
    lr_tut = 100.0 * np.sqrt(args.features / 10000)  # the tutorial's η·s at any number of features
    cases = [(f"depth 2, γ={g}", tut, [30], g, lr_tut, 250) for g in (1e-12, 1e-3, 1.0, 3.0)]
    cases.append(("depth 2, torch default init", tut, [30], "default", lr_tut, 250))
    for h in (1, 3, 7):
        lr = 0.4 * theory.stable_lr(*small, hidden=h).learned
        cases.append((f"depth 2, bottleneck {h} (8 items × 100)", small, [h], 1e-12, lr, 2000))
    for depth in (3, 4):
        for g in (1e-3, 1.0):
            lr = 0.5 * theory.stable_lr(*tut, depth=depth).learned
            cases.append((f"depth {depth}, γ={g}", tut, [30] * (depth - 1), g, lr, None))
    rows = []
    print("| case | epochs | modes learned | modes | loss | W_tot | outputs | floor (2 trainings) | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (X, Y), hidden, gamma, lr, n in cases:
        t0 = time.perf_counter()
        w0 = init(X, Y, hidden, gamma)
        if n is None:  # until the prediction has every mode past half-learning (capped)
            k = theory.predictor(X, Y, lr, weights=w0).time_to_learn(0.5)
            n = int(min(1.1 * k.max(), args.max_epochs)) if np.isfinite(k).all() else 5000
        err, learned, pred = compare(X, Y, w0, lr, n)
        row = dict(case=name, epochs=n, learned=learned, modes_total=int(pred.s.size), lr=lr, **err,
                   seconds=time.perf_counter() - t0)
        rows.append(row)
        print(f"| {name} | {n} | {learned}/{pred.s.size} | {err['modes']:.1e} | {err['loss']:.1e} | "
              f"{err['w_tot']:.1e} | {err['outputs']:.1e} | {err['floor']:.1e} | {row['seconds']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

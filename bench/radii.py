"""Basin radii of a trained swiss-roll net along random directions: :func:`genviz_lib.volume.basin_radius`
on the batched objective against the tight plain loop a user would write — copy the net, write ``θ + tφ``
into it with ``vector_to_parameters``, run the 200 training points forward under ``no_grad``, double or
halve ``t`` from 1 until it brackets the cutoff, bisect to ``rtol``.

    python bench/radii.py [--m 1000] [--threads 2]
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.utils.flop_counter import FlopCounterMode

try:  # run from bench/ on sys.path (bench/run.py, or this file as a script)
    from common import Row, best_of, timed
except ImportError:  # imported as bench.radii from the repository root
    from bench.common import Row, best_of, timed

from genviz_lib import landscape, volume


def plain_radii(net, X, y, directions, cutoff, rtol=1e-3):
    """``(radii [m], evaluations)`` the plain way, one direction and one forward pass at a time."""
    probe = copy.deepcopy(net).eval()
    params = [p for p in probe.parameters() if p.requires_grad]
    theta = parameters_to_vector(params).detach()
    single = probe(X[:1]).shape[-1] == 1
    target = y.float() if single else y
    evaluations = 0
    radii = []
    with torch.no_grad():
        def loss(t, phi):
            nonlocal evaluations
            evaluations += 1
            vector_to_parameters(torch.add(theta, phi, alpha=t), params)
            out = probe(X)
            return float(F.binary_cross_entropy_with_logits(out[:, 0], target) if single
                         else F.cross_entropy(out, target))

        for phi in directions / directions.norm(dim=1, keepdim=True):
            t = 1.0
            if loss(t, phi) >= cutoff:
                hi, lo = t, t / 2
                while loss(lo, phi) >= cutoff:
                    hi, lo = lo, lo / 2
            else:
                lo, hi = t, 2 * t
                while loss(hi, phi) < cutoff:
                    lo, hi = hi, 2 * hi
            while hi - lo > rtol * hi:
                mid = 0.5 * (lo + hi)
                if loss(mid, phi) >= cutoff:
                    hi = mid
                else:
                    lo = mid
            radii.append(hi)
    return torch.tensor(radii, dtype=torch.float64), evaluations


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matrix-product rate at the current thread count: the best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(timed(lambda: a @ b)[1] for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def forward_flops(net, X) -> int:
    """FLOPs of one forward pass of ``net`` on ``X`` (matrix products, as ``FlopCounterMode`` counts them)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(X)
    return counter.get_total_flops()


def bench_radii(net, roll, m: int = 1000, cutoff: float | None = None, rtol: float = 1e-3, repeats: int = 3) -> Row:
    """Radii of ``net`` (trained on ``roll.train``) along ``m`` random unit directions, both ways on the same
    directions. The cutoff is 0.1 when the net's training loss is below it, else 1."""
    X, y = roll.train.X, roll.train.y
    theta = landscape.flatten(net)
    phi = landscape.random_directions(theta.numel(), m, torch.Generator().manual_seed(0))
    f = landscape.objective(net, X, y)
    with torch.no_grad():
        loss = float(f(theta[None])[0])
    notes = []
    if cutoff is None:
        cutoff = 0.1 if loss < 0.1 else 1.0
        if cutoff == 1.0:
            notes.append(f"the net's training loss {loss:.3g} is not below 0.1: cutoff 1")

    seconds_in_f = []

    def timed_f(T):
        start = time.perf_counter()
        out = f(T)
        seconds_in_f.append(time.perf_counter() - start)
        return out

    # warm up both paths (allocator, dispatch caches) on a few directions
    volume.basin_radius(f, theta, phi[:32], cutoff, rtol=rtol)
    plain_radii(net, X, y, phi[:4], cutoff, rtol)

    runs = []  # (seconds, seconds inside the objective, result): the run of median time is reported
    for _ in range(repeats):
        seconds_in_f.clear()
        result, seconds = timed(lambda: volume.basin_radius(timed_f, theta, phi, cutoff, rtol=rtol))
        runs.append((seconds, sum(seconds_in_f), result))
    t_fast, t_in_f, fast = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    (plain, plain_evaluations), t_plain = best_of(lambda: plain_radii(net, X, y, phi, cutoff, rtol),
                                                  repeats=repeats, warmup=0)
    gap = float(((fast.radii - plain).abs() / plain).max())
    flops = forward_flops(net, X)
    achieved = flops * fast.evaluations / t_fast / 1e9
    in_f = flops * fast.evaluations / t_in_f / 1e9
    peak = matmul_gflops()
    threads = torch.get_num_threads()
    notes += [
        f"evaluations a direction: batched search {fast.evaluations / m:.2f}, plain loop {plain_evaluations / m:.2f} "
        f"(largest relative gap in radii {gap:.1e}; rtol {rtol:g}; {int(fast.n_at_cap)} directions at the cap)",
        f"one forward pass on {len(X)} points is {flops / 1e6:.2f} MFLOP: the batched search runs at "
        f"{achieved:.1f} GFLOP/s ({in_f:.1f} inside the objective, {100 * t_in_f / t_fast:.0f}% of its time), the "
        f"plain loop at {flops * plain_evaluations / t_plain / 1e9:.2f}; a 2048² fp32 matmul at {peak:.0f} "
        f"GFLOP/s ({threads} thread{'s' if threads > 1 else ''})",
    ]
    return Row(f"basin radius along {m} random directions (swiss-roll net, {len(X)} points, training loss {loss:.3g}, "
               f"cutoff {cutoff:g}, rtol {rtol:g})",
               genviz=("basin_radius on the batched objective (vmap)", t_fast),
               others=[("plain loop: vector_to_parameters, forward, double then bisect", t_plain)], notes=notes)


if __name__ == "__main__":
    import argparse

    from run import _steady_allocator, _trained_swiss_roll_net

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {_steady_allocator()}")
    print("\n".join(bench_radii(*_trained_swiss_roll_net(), m=args.m).lines()))

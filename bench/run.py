"""Benchmarks: each runs genviz and the other ways of doing the same work (a plain reference path, and the peer
libraries where one does it) in one run, and prints the times and their ratios. ``make bench`` runs them all;
pass names to run some.

    python bench/run.py [NAME ...] [--threads N]     (names: see --help)
"""

from __future__ import annotations

import argparse
import copy
import functools

import torch

import peers
import radii
import throughput
from common import Row, _loop_objective, _steady_allocator, timed
from genviz_lib import curvature, data, landscape, models, train

_timed = timed


def bench_ensemble(members: int = 16, steps: int = 300) -> Row:
    """K swiss-roll nets (different seeds and poison factors) trained as one batched model vs one by one."""
    roll = data.swiss_roll(n_train=200, n_test=200, n_poison=400, seed=0)
    betas = [0.5 * k / (members - 1) for k in range(members)]
    options = dict(lr=3e-3, steps=steps, poison=roll.poison, poison_batch_size=200, clip_grad_norm=8,
                   eval_every=50, progress=False)

    def inits():
        nets = []
        for seed in range(members):
            torch.manual_seed(seed)
            nets.append(models.swiss_roll_net())
        return nets

    # warm up both paths (first calls pay for allocations and dispatch caches)
    train.train(inits()[0], roll.train, roll.test, poison_factor=0.1, **{**options, "steps": 20})
    train.train_ensemble(inits()[:2], roll.train, roll.test, poison_factor=[0.1, 0.2], **{**options, "steps": 20})

    alone, t_alone = _timed(lambda: [train.train(net, roll.train, roll.test, poison_factor=b, **options)
                                     for net, b in zip(inits(), betas)])
    together, t_together = _timed(lambda: train.train_ensemble(inits(), roll.train, roll.test,
                                                               poison_factor=betas, **options))
    gap = max(abs(a.final["train_loss"] - b.final["train_loss"]) for a, b in zip(alone, together))
    return Row(f"ensemble training: {members} swiss-roll nets × {steps} Adam steps (poisoned loss, full batch)",
               ("one batched model", t_together), [("one by one", t_alone)],
               [f"largest gap in final train loss between the paths: {gap:.1e}; float32 rounding differs between "
                "batched and plain products and Adam amplifies it — in float64 the paths agree to 1e-7, see "
                "tests/test_train.py"])


@functools.lru_cache(maxsize=1)
def _trained_swiss_roll_net():
    """One trained swiss-roll net shared by the benchmarks (callers must not modify it)."""
    roll = data.swiss_roll(n_train=200, n_test=200, seed=0)
    torch.manual_seed(0)
    result = train.train(models.swiss_roll_net(), roll.train, lr=3e-3, steps=3000, clip_grad_norm=8,
                         stop_at_loss=0.01, eval_every=10, progress=False)
    return result.model, roll


def _surface(net, X, y, size=51, chunk=256) -> dict:
    theta = landscape.flatten(net)
    gen = torch.Generator().manual_seed(0)
    d1 = landscape.filter_normalized_direction(net, gen)
    d2 = landscape.orthogonalize(landscape.filter_normalized_direction(net, gen), d1)
    axis = landscape.grid(-1.0, 1.0, size).float()
    fast_f = landscape.objective(net, X, y, chunk=chunk)
    slow_f = _loop_objective(net, X, y)
    small = axis[size // 2 - 2: size // 2 + 3]  # warm both paths up (allocator, dispatch caches) on a 5×5 grid
    landscape.slice_2d(fast_f, theta, d1, d2, small, small), landscape.slice_2d(slow_f, theta, d1, d2, small, small)
    slow, t_slow = _timed(lambda: landscape.slice_2d(slow_f, theta, d1, d2, axis, axis))
    fast, t_fast = _timed(lambda: landscape.slice_2d(fast_f, theta, d1, d2, axis, axis))
    gap = float(((fast - slow).abs() / slow.abs().clamp_min(1e-6)).max())
    return t_fast, t_slow, gap


def bench_surface_swiss_roll() -> Row:
    """A 51×51 filter-normalized loss surface of the swiss-roll net."""
    net, roll = _trained_swiss_roll_net()
    t_fast, t_slow, gap = _surface(net, roll.train.X, roll.train.y)
    return Row("51×51 filter-normalized surface, swiss-roll net on 200 points (float32)",
               ("batched objective (vmap)", t_fast), [("loop over grid points", t_slow)],
               [f"largest relative gap {gap:.1e}"])


def bench_eigenvalues(k: int = 10) -> Row:
    """Top-k Hessian eigenvalues of the swiss-roll net to 1e-3 relative: Lanczos vs deflated power iteration."""
    net, roll = _trained_swiss_roll_net()
    net = copy.deepcopy(net).double()
    f = landscape.objective(net, roll.train.X.double(), roll.train.y)
    theta = landscape.flatten(net)
    opts = dict(k=k, tol=1e-3, max_hvps=20000, return_info=True)
    lz, t_lz = _timed(lambda: curvature.top_eigenvalues(f, theta, method="lanczos",
                                                       generator=torch.Generator().manual_seed(0), **opts))
    pw, t_pw = _timed(lambda: curvature.top_eigenvalues(f, theta, method="power",
                                                       generator=torch.Generator().manual_seed(0), **opts))
    gap = float(((lz.values - pw.values).abs() / lz.values.abs()).max())
    return Row(f"top-{k} Hessian eigenvalues of the swiss-roll net, 1e-3 relative tolerance: Lanczos against "
               "power iteration", (f"Lanczos, {lz.hvps} HVPs", t_lz), [(f"deflated power iteration, {pw.hvps} HVPs", t_pw)],
               [f"HVP ratio {pw.hvps / lz.hvps:.1f}×; largest relative gap in eigenvalues {gap:.1e}; "
                f"λ₁ = {lz.values[0]:.4g}, λ₁₀ = {lz.values[-1]:.4g}"])


def _fresh_process(what: str) -> list[str]:
    """A row run in a new interpreter (peak memory needs an allocator that holds nothing from earlier rows)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "peers.py", str(torch.get_num_threads()), what], capture_output=True,
                         text=True, cwd=__file__.rsplit("/", 1)[0] or ".", check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def _single(fn):
    return lambda: [fn()]


BENCHMARKS = {
    "hvp": lambda: [peers.bench_hvp(name) for name in ("swiss", "mlp", "cnn")],
    "eigenvalues-peers": lambda: [peers.bench_eigenvalues(name) for name in ("swiss", "mlp")],
    "trace": lambda: [peers.bench_trace(name) for name in ("swiss", "mlp")],
    "density": _single(peers.bench_density),
    "dense-hessian": lambda: _fresh_process("dense"),
    "slice": _single(peers.bench_slice),
    "radii": lambda: [radii.bench_radii(*_trained_swiss_roll_net())],
    "surface": _single(bench_surface_swiss_roll),
    "surface-cnn": _single(throughput.bench_surface_cnn),
    "eigenvalues": _single(bench_eigenvalues),
    "ensemble": _single(bench_ensemble),
    "scaling": throughput.bench_scaling,
}


def matmul_rate(size: int = 2048) -> float:
    """The machine's fp32 matmul rate in GFLOP/s at the current thread count (best of 5)."""
    A, B = torch.randn(size, size), torch.randn(size, size)
    A @ B
    best = min(timed(lambda: A @ B)[1] for _ in range(5))
    return 2 * size ** 3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], default=[])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = _steady_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, {allocator}; "
          f"fp32 matmul {matmul_rate():.0f} GFLOP/s (2048², best of 5)")
    for name in args.names or BENCHMARKS:
        print(flush=True)
        for row in BENCHMARKS[name]():
            print("\n".join(row.lines() if isinstance(row, Row) else [row]), flush=True)


if __name__ == "__main__":
    main()

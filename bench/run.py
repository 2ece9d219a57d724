"""Benchmarks: each runs a fast path and a plain reference path on the same work, in one run, and
prints both times and their ratio. ``make bench`` runs them all; pass names to run some.

    python bench/run.py [radii surface surface-cnn eigenvalues ensemble] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import functools
import time

import torch

from genviz_lib import curvature, data, landscape, losses, models, train, volume


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_ensemble(members: int = 16, steps: int = 300) -> dict:
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
    return {"name": f"ensemble training: {members} swiss-roll nets × {steps} Adam steps "
                    f"(poisoned loss, full batch)",
            "reference": ("one by one", t_alone), "fast": ("one batched model", t_together),
            "note": f"(largest gap in final train loss between the paths: {gap:.1e}; float32 rounding "
                    "differs between batched and plain products and Adam amplifies it — in float64 the "
                    "paths agree to 1e-7, see tests/test_train.py)"}


@functools.lru_cache(maxsize=1)
def _trained_swiss_roll_net():
    """One trained swiss-roll net shared by the benchmarks (callers must not modify it)."""
    roll = data.swiss_roll(n_train=200, n_test=200, seed=0)
    torch.manual_seed(0)
    result = train.train(models.swiss_roll_net(), roll.train, lr=3e-3, steps=3000, clip_grad_norm=8,
                         stop_at_loss=0.01, eval_every=10, progress=False)
    return result.model, roll


def _loop_objective(model, X, y):
    """The plain way: write each parameter vector into the model and run a forward pass."""
    probe = copy.deepcopy(model).eval()

    @torch.no_grad()
    def f(Theta):
        out = []
        for theta in Theta:
            landscape.unflatten(probe, theta)
            out.append(losses.cross_entropy(probe(X), y).mean())
        return torch.stack(out)

    return f


def bench_radii(m: int = 1000) -> dict:
    """Basin radii along m random directions of the swiss-roll net on its 200 training points."""
    net, roll = _trained_swiss_roll_net()
    theta = landscape.flatten(net)
    phi = landscape.random_directions(theta.numel(), m, torch.Generator().manual_seed(0))
    options = dict(cutoff=1.0, rtol=1e-3, r_min=1e-2, growth=2.0)
    fast_f = landscape.objective(net, roll.train.X, roll.train.y)
    slow_f = _loop_objective(net, roll.train.X, roll.train.y)
    fast, t_fast = _timed(lambda: volume.basin_radius(fast_f, theta, phi, **options))
    slow, t_slow = _timed(lambda: volume.basin_radius(slow_f, theta, phi, **options))
    gap = float(((fast.radii - slow.radii).abs() / slow.radii).max())
    return {"name": f"basin radius along {m} random directions (swiss-roll net, 200 points, cutoff 1, rtol 1e-3)",
            "reference": ("loop: write θ + tφ into the model, forward", t_slow),
            "fast": ("batched objective (vmap)", t_fast),
            "note": f"({fast.evaluations} evaluations each; largest relative gap in radii {gap:.1e})"}


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


def bench_surface_swiss_roll() -> dict:
    """A 51×51 filter-normalized loss surface of the swiss-roll net."""
    net, roll = _trained_swiss_roll_net()
    t_fast, t_slow, gap = _surface(net, roll.train.X, roll.train.y)
    return {"name": "51×51 filter-normalized surface, swiss-roll net on 200 points",
            "reference": ("loop over grid points", t_slow), "fast": ("batched objective (vmap)", t_fast),
            "note": f"(largest relative gap {gap:.1e})"}


def bench_surface_cnn() -> dict:
    """A 51×51 surface of a small CNN on 1,000 Fashion-MNIST images.

    The objective's default for conv nets on a CPU (one vector at a time) is timed against the plain
    loop; ``vmap`` over the weights is timed too, on one row of the grid, to show why it is not the
    default there (it becomes a grouped convolution)."""
    fm = data.load_fashion_mnist(n_train=1000, n_test=10, downsample=1)
    torch.manual_seed(0)
    net = models.SmallCNN((8, 16, 32), in_channels=1, image_size=28)
    t_fast, t_slow, gap = _surface(net, fm.train.X, fm.train.y)
    theta = landscape.flatten(net)
    row = theta + torch.linspace(-1, 1, 51)[:, None] * landscape.filter_normalized_direction(net)[None]
    batched = landscape.objective(net, fm.train.X, fm.train.y, strategy="vmap", chunk=17)
    with torch.no_grad():
        _, t_vmap = _timed(lambda: batched(row))
    return {"name": f"51×51 filter-normalized surface, small CNN ({models.count_parameters(net):,} parameters) "
                    "on 1,000 Fashion-MNIST images",
            "reference": ("loop over grid points", t_slow),
            "fast": ("objective, strategy 'loop' (the default for conv nets on a CPU)", t_fast),
            "note": f"(largest relative gap {gap:.1e}; per point: loop {1e3 * t_slow / 51 ** 2:.1f} ms, objective "
                    f"{1e3 * t_fast / 51 ** 2:.1f} ms, vmap {1e3 * t_vmap / 51:.1f} ms — a plain forward pass is "
                    "already bound by the convolutions' arithmetic, so there is nothing to batch away)"}


def bench_eigenvalues(k: int = 10) -> dict:
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
    return {"name": f"top-{k} Hessian eigenvalues of the swiss-roll net, 1e-3 relative tolerance",
            "reference": (f"deflated power iteration, {pw.hvps} HVPs", t_pw),
            "fast": (f"Lanczos, {lz.hvps} HVPs", t_lz),
            "note": f"(HVP ratio {pw.hvps / lz.hvps:.1f}×; largest relative gap in eigenvalues {gap:.1e}; "
                    f"λ₁ = {lz.values[0]:.4g}, λ₁₀ = {lz.values[-1]:.4g})"}


BENCHMARKS = {"radii": bench_radii, "surface": bench_surface_swiss_roll, "surface-cnn": bench_surface_cnn,
              "eigenvalues": bench_eigenvalues, "ensemble": bench_ensemble}


def _steady_allocator() -> str:
    """Keep glibc from handing large tensors back to the OS between forward passes.

    With its default (dynamic) thresholds, glibc serves a multi-megabyte activation from a fresh
    ``mmap`` or a freshly grown heap at unpredictable times, and the page faults can double the time
    of a conv net's forward pass — so whichever path ran first looked 1.7× faster or slower. Fixed
    thresholds make both paths pay the same; it changes nothing else."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
        return "glibc thresholds fixed" if ok else "glibc mallopt refused"
    except OSError:
        return "not glibc: allocator left as is"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], default=[])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = _steady_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, {allocator}")
    for name in args.names or BENCHMARKS:
        result = BENCHMARKS[name]()
        (ref_name, ref_t), (fast_name, fast_t) = result["reference"], result["fast"]
        print(f"\n{result['name']}")
        print(f"  reference ({ref_name}): {ref_t:8.2f} s")
        print(f"  fast      ({fast_name}): {fast_t:8.2f} s")
        print(f"  ratio: {ref_t / fast_t:.1f}×   {result.get('note', '')}")


if __name__ == "__main__":
    main()

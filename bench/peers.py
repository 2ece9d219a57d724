"""genviz against the peer libraries on the same work: the same weights, data, loss and precision, one process.

The peers are installed by ``make bench`` only (``pip install -e ".[bench]"``): curvlinops-for-pytorch,
hessian-eigenthings, PyHessian and loss-landscapes. Each row checks that the answers agree before it prints
the times.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time

import numpy as np
import scipy.sparse.linalg
import torch
from torch import nn

from common import Row, best_of, peak_memory, timed
from genviz_lib import curvature, data, landscape, losses, models, train


class MeanCrossEntropy(nn.Module):
    """The book's cross-entropy (one logit for two classes, or C logits), averaged: every library gets this."""

    reduction = "mean"

    def forward(self, outputs, y):
        return losses.cross_entropy(outputs, y).mean()


@functools.lru_cache(maxsize=None)
def case(name: str):
    """``(model, X, y)`` for a named setting, in the precision the comparison uses.

    ``swiss``: Huang et al.'s swiss-roll net (3,614 parameters) trained on 200 points, float64. ``mlp``: a
    196→32→10 ReLU net trained for 300 Adam steps on 1,000 Fashion-MNIST images at 14×14, float64. ``cnn``: the
    small CNN of the surface benchmark (untrained) on 1,000 images at 28×28, float32."""
    torch.manual_seed(0)
    if name == "swiss":
        roll = data.swiss_roll(n_train=200, n_test=200, seed=0)
        net = train.train(models.swiss_roll_net(), roll.train, lr=3e-3, steps=3000, clip_grad_norm=8,
                          stop_at_loss=0.01, eval_every=10, progress=False).model
        return net.double(), roll.train.X.double(), roll.train.y
    if name == "mlp":
        fm = data.load_fashion_mnist(n_train=1000, n_test=10, downsample=2)
        split = data.Data(fm.train.X.flatten(1), fm.train.y)
        net = train.train(models.MLP(196, [32], 10), split, lr=3e-3, steps=300, eval_every=100,
                          progress=False).model
        return net.double(), split.X.double(), split.y
    if name == "cnn":
        fm = data.load_fashion_mnist(n_train=1000, n_test=10, downsample=1)
        return models.SmallCNN((8, 16, 32), in_channels=1, image_size=28), fm.train.X, fm.train.y
    raise ValueError(name)


def _describe(name):
    net, X, _ = case(name)
    return f"{name} ({models.count_parameters(net):,} params, {len(X):,} points, {str(net_dtype(net))[6:]})"


def net_dtype(net):
    return next(net.parameters()).dtype


def _split_like(net, v):
    params = [p for p in net.parameters() if p.requires_grad]
    return [piece.view_as(p) for piece, p in zip(v.split([p.numel() for p in params]), params)]


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def _interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds per call of each function, the calls interleaved so that load affects all alike."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _pyhessian(net, X, y):
    """PyHessian's operator. It keeps the gradient in the parameters' ``.grad``, and ``backward`` adds to what is
    there: cleared first, or a second operator on the same net would see twice the Hessian."""
    import pyhessian

    net.zero_grad(set_to_none=True)
    return pyhessian.hessian(net, MeanCrossEntropy(), data=(X, y), cuda=False)


def _peer_operators(net, X, y):
    """The peers' Hessian operators on ``(net, X, y)`` (each library's own way of being set up)."""
    import curvlinops
    import hessian_eigenthings

    criterion = MeanCrossEntropy()
    params = [p for p in net.parameters() if p.requires_grad]
    ph = _pyhessian(net, X, y)
    he = hessian_eigenthings.HessianOperator(net, [(X, y)], lambda model, batch: criterion(model(batch[0]), batch[1]))
    cl = curvlinops.HessianLinearOperator(net, criterion, params, [(X, y)], check_deterministic=False)
    return ph, he, cl


def bench_hvp(name: str) -> Row:
    """One Hessian-vector product at a fixed point, many times (what Lanczos and the trace estimators need)."""
    from pyhessian.utils import hessian_vector_product

    net, X, y = case(name)
    f = landscape.objective(net, X, y)
    theta = landscape.flatten(net)
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(0), dtype=theta.dtype)
    op = curvature.HessianOperator(f, theta)
    plain = curvature.HessianOperator(f, theta, engine="autograd")
    ph, he, cl = _peer_operators(net, X, y)
    vs = _split_like(net, v)
    ours = op @ v
    answers = {"PyHessian": _flat(hessian_vector_product(ph.gradsH, ph.params, vs)), "hessian-eigenthings":
               he.matvec(v), "curvlinops": cl @ v}
    gap = max(float((a - ours).abs().max() / ours.abs().max()) for a in answers.values())
    repeats = 40 if name != "cnn" else 5
    t = _interleaved({"genviz": lambda: op @ v, "autograd": lambda: plain @ v,
                      "PyHessian": lambda: hessian_vector_product(ph.gradsH, ph.params, vs),
                      "hessian-eigenthings": lambda: he.matvec(v),
                      "curvlinops": lambda: cl @ v}, repeats)
    V = torch.randn(32, theta.numel(), generator=torch.Generator().manual_seed(1), dtype=theta.dtype)
    _, t_batched = best_of(lambda: op.matmat(V, block=32), repeats=3)
    _, t_loop = best_of(lambda: op.matmat(V, block=1), repeats=3)
    _, t_plain_batched = best_of(lambda: plain.matmat(V, block=32), repeats=3)
    _, t_flat = best_of(lambda: _flat(hessian_vector_product(ph.gradsH, ph.params, _split_like(net, v))), repeats=20)
    other = (f"genviz's autograd engine (double backward, graph kept) {1e3 * t['autograd']:.3f} ms, interleaved "
             f"with the rest" if op.engine == "explicit" else "")
    return Row(f"one Hessian-vector product, {_describe(name)}", (f"HessianOperator @ v ({op.engine} engine)",
                                                                  t["genviz"]),
               [("PyHessian (graph kept)", t["PyHessian"]),
                ("hessian-eigenthings (graph rebuilt per product)", t["hessian-eigenthings"]),
                ("curvlinops (forward-over-reverse, per product)", t["curvlinops"])],
               [f"median of {repeats} interleaved calls (each library's own vector format: PyHessian takes and "
                f"gives a list of tensors); largest relative gap to genviz {gap:.1e}",
                f"PyHessian with a flat vector in and out, as Lanczos needs it: {1e3 * t_flat:.3f} ms "
                f"(median of 20, not interleaved)",
                f"32 products at one point: {1e3 * t_batched / 32:.3f} ms each as one block, "
                f"{1e3 * t_loop / 32:.3f} ms each one at a time; the autograd engine's batched backward pass "
                f"{1e3 * t_plain_batched / 32:.3f} ms each"] + ([other] if other else []),
               unit="ms")


def bench_eigenvalues(name: str, k: int = 10, tol: float = 1e-3) -> Row:
    """The top ``k`` eigenvalues to a relative residual ``tol``."""
    net, X, y = case(name)
    f = landscape.objective(net, X, y)
    theta = landscape.flatten(net)
    gen = lambda: torch.Generator().manual_seed(0)
    ours, t_ours = best_of(lambda: curvature.top_eigenvalues(f, theta, k=k, tol=tol, generator=gen(),
                                                             return_info=True), repeats=3)
    _, _, cl = _peer_operators(net, X, y)
    scipy_op = cl.to_scipy()
    v0 = torch.randn(theta.numel(), generator=gen(), dtype=torch.float64).numpy()
    (vals, _), t_cl = best_of(lambda: scipy.sparse.linalg.eigsh(scipy_op, k=k, which="LA", tol=tol, v0=v0),
                              repeats=3)
    theirs = torch.from_numpy(np.sort(vals)[::-1].copy())
    gap = float(((theirs - ours.values) / ours.values).abs().max())

    ph = _pyhessian(net, X, y)
    torch.manual_seed(0)
    (ph_vals, _), t_ph = timed(lambda: ph.eigenvalues(maxIter=1000, tol=tol, top_n=k))
    ph_gap = float(((torch.tensor(sorted(ph_vals, reverse=True), dtype=torch.float64) - ours.values)
                    / ours.values).abs().max())
    return Row(f"top-{k} Hessian eigenvalues to {tol:g} relative residual, {_describe(name)}",
               (f"top_eigenvalues (Lanczos, {ours.hvps} HVPs)", t_ours),
               [("curvlinops + scipy.sparse.linalg.eigsh", t_cl),
                ("PyHessian eigenvalues (deflated power iteration, once)", t_ph)],
               [f"largest relative gap in eigenvalues: eigsh {gap:.1e}, PyHessian {ph_gap:.1e} (its stopping rule "
                f"is a relative change of λ between iterations, not a residual); λ₁ = {ours.values[0]:.5g}, "
                f"λ₁₀ = {ours.values[-1]:.5g}"])


def bench_trace(name: str, hvps: int = 100, seeds: int = 50) -> Row:
    """``tr H`` at a budget of ``hvps`` products: time per estimate and spread over ``seeds`` seeds."""
    import curvlinops

    net, X, y = case(name)
    f = landscape.objective(net, X, y)
    theta = landscape.flatten(net)
    truth = float(curvature.hessian(f, theta).diagonal().sum())
    _, _, cl = _peer_operators(net, X, y)

    ph = _pyhessian(net, X, y)

    def spread(fn):
        values, start = [], time.perf_counter()
        for seed in range(seeds):
            torch.manual_seed(seed)
            values.append(float(fn(seed)))
        seconds = (time.perf_counter() - start) / seeds
        return np.std(values, ddof=1), np.mean(values), seconds

    ours = {m: spread(lambda s, m=m: curvature.hessian_trace(f, theta, samples=hvps, method=m,
                                                             generator=torch.Generator().manual_seed(s)).value)
            for m in curvature.TRACE_METHODS}
    peers = {"curvlinops xtrace": spread(lambda s: curvlinops.xtrace(cl, hvps)),
             f"curvlinops hutch++ ({3 * (hvps // 3)})": spread(lambda s: curvlinops.hutchpp_trace(cl, 3 * (hvps // 3))),
             "curvlinops hutchinson": spread(lambda s: curvlinops.hutchinson_trace(cl, hvps)),
             "PyHessian trace (Hutchinson)": spread(lambda s: np.mean(ph.trace(maxIter=hvps, tol=0.0)))}
    best_peer = min(peers, key=lambda k: peers[k][0])
    notes = [f"exact trace {truth:.6g} (dense Hessian); spread = sd over {seeds} seeds, {hvps} products each"]
    for label, (sd, mean, _) in {**{f"genviz {m}": v for m, v in ours.items()}, **peers}.items():
        notes.append(f"{label:30s} sd {sd:10.4g}   mean − exact {mean - truth:+10.3g}")
    notes.append(f"spread ratio, {best_peer} / genviz krylov (the default): "
                 f"{peers[best_peer][0] / ours['krylov'][0]:.2f}× (sd over {seeds} seeds: ±{100 / (2 * seeds) ** 0.5:.0f}% "
                 "each)")
    return Row(f"Hessian trace from {hvps} products, {_describe(name)}: seconds per estimate",
               ("hessian_trace, krylov (the default)", ours["krylov"][2]),
               [(k, v[2]) for k, v in peers.items()], notes)


def bench_density(name: str = "swiss", probes: int = 8, steps: int = 80) -> Row:
    """Stochastic Lanczos quadrature: ``probes`` × ``steps`` Lanczos steps."""
    import hessian_eigenthings

    net, X, y = case(name)
    f = landscape.objective(net, X, y)
    theta = landscape.flatten(net)
    ours, t_ours = timed(lambda: curvature.spectral_density(f, theta, probes=probes, steps=steps,
                                                            generator=torch.Generator().manual_seed(0)))
    _, he, _ = _peer_operators(net, X, y)
    theirs, t_he = timed(lambda: hessian_eigenthings.spectral_density(he, num_runs=probes, lanczos_steps=steps,
                                                                      seed=0))
    ph = _pyhessian(net, X, y)
    torch.manual_seed(0)
    others = [("hessian-eigenthings spectral_density", t_he)]
    notes = [f"largest node: genviz {float(ours.nodes.max()):.6g}, hessian-eigenthings "
             f"{float(theirs.raw_eigenvalues.max()):.6g}; tr H / n from the nodes: genviz "
             f"{ours.moment(lambda x: x):.5g}, hessian-eigenthings "
             f"{float((theirs.raw_weights * theirs.raw_eigenvalues).sum(1).mean()):.5g}"]
    try:
        _, t_ph = timed(lambda: ph.density(iter=steps, n_v=probes))
        others.append(("PyHessian density", t_ph))
    except RuntimeError as err:  # PyHessian 0.1 calls torch.eig, removed from torch in 2.0
        notes.append(f"PyHessian density does not run on torch {torch.__version__}: {str(err).splitlines()[0][:70]}…")
    return Row(f"spectral density, {probes} probes × {steps} Lanczos steps, {_describe(name)}",
               ("spectral_density (probes advanced together)", t_ours),
               others, notes)


def bench_dense_hessian(name: str = "swiss") -> Row:
    """The dense Hessian: time and extra peak memory, against ``torch.autograd.functional.hessian``."""
    net, X, y = case(name)
    f = landscape.objective(net, X, y)
    theta = landscape.flatten(net)
    n = theta.numel()
    size = n * n * theta.element_size()
    scalar = curvature._scalar(f)
    # genviz first, in a fresh process: nothing freed before it that it could reuse unseen (torch's peak, measured
    # second, can only come out lower than it is)
    ours, t_ours, mem_ours = peak_memory(lambda: curvature.hessian(f, theta))
    theirs, t_theirs, mem_theirs = peak_memory(lambda: torch.autograd.functional.hessian(scalar, theta))
    del theirs
    check = torch.autograd.functional.hessian(scalar, theta)
    gap = float((ours - check).abs().max() / check.abs().max())
    del check
    return Row(f"dense Hessian, {_describe(name)}: the Hessian itself is {size / 2 ** 20:.0f} MiB",
               (f"hessian (column blocks): peak +{mem_ours / 2 ** 20:.0f} MiB = {mem_ours / size:.2f}× the Hessian",
                t_ours),
               [(f"torch.autograd.functional.hessian: peak +{mem_theirs / 2 ** 20:.0f} MiB = "
                 f"{mem_theirs / size:.2f}× the Hessian", t_theirs)],
               [f"largest relative gap {gap:.1e}; peak = high-water mark of the resident set above its start"])


def bench_slice(name: str = "swiss", size: int = 51) -> Row:
    """A ``size``×``size`` filter-normalized slice: genviz, loss-landscapes and a per-point loop."""
    import loss_landscapes
    import loss_landscapes.metrics

    net, X, y = case(name)
    net = copy.deepcopy(net).float()
    X = X.float()
    f = landscape.objective(net, X, y)
    theta = landscape.flatten(net)
    d1, d2 = landscape.filter_normalized_plane(net, torch.Generator().manual_seed(0))
    h = 2.0 / (size - 1)
    a = torch.tensor([-1 + i * h for i in range(size)], dtype=torch.float64)
    ours, t_ours = timed(lambda: landscape.slice_2d(f, theta, d1, d2, a, a))
    # loss-landscapes walks the plane from start = θ − d₁ − d₂ in steps of h·d₁ and h·d₂, column by column,
    # alternately up and down d₂: its odd columns sit on our grid, its even ones one step higher along d₂
    start = theta - d1 - d2
    models_ = [landscape.unflatten(copy.deepcopy(net), p) for p in
               (start, start + d1 * (size * h), start + d2 * (size * h))]
    metric = loss_landscapes.metrics.Loss(MeanCrossEntropy(), X, y)
    theirs, t_theirs = timed(lambda: loss_landscapes.planar_interpolation(*models_, metric, steps=size,
                                                                          deepcopy_model=True))
    theirs = torch.from_numpy(theirs).T  # [d₂ step, d₁ step], as ours
    gap_ll = max(float(((theirs[:, 1::2] - ours[:, 1::2]) / ours[:, 1::2]).abs().max()),
                 float(((theirs[:-1, 0::2] - ours[1:, 0::2]) / ours[1:, 0::2]).abs().max()))
    probe = copy.deepcopy(net).eval()

    @torch.no_grad()
    def loop():
        out = torch.empty(size, size)
        for j, bj in enumerate(a):
            for i, ai in enumerate(a):
                torch.nn.utils.vector_to_parameters(theta + float(ai) * d1 + float(bj) * d2, probe.parameters())
                out[j, i] = losses.cross_entropy(probe(X), y).mean()
        return out

    plain, t_loop = timed(loop)
    gap_loop = float(((plain - ours) / ours).abs().max())
    return Row(f"{size}×{size} filter-normalized slice, {_describe(name).replace('float64', 'float32')}",
               ("slice_2d (batched objective)", t_ours),
               [("loss-landscapes planar_interpolation", t_theirs),
                ("per-point loop (vector_to_parameters, forward)", t_loop)],
               [f"largest relative gap: loss-landscapes {gap_ll:.1e} (its points come from repeated in-place "
                f"additions, and its even columns lie one step further along d₂), loop {gap_loop:.1e}"])


def rows():
    """Every peer comparison, in order."""
    yield bench_hvp("swiss")
    yield bench_hvp("mlp")
    yield bench_hvp("cnn")
    yield bench_eigenvalues("swiss")
    yield bench_eigenvalues("mlp")
    yield bench_trace("swiss")
    yield bench_trace("mlp")
    yield bench_density("swiss")
    yield bench_dense_hessian("swiss")
    yield bench_slice("swiss")


if __name__ == "__main__":
    # python bench/peers.py THREADS [dense]: every row, or only the dense Hessian (a fresh process, so that its
    # peak memory is not hidden by memory that earlier rows left with the allocator)
    import sys

    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    if sys.argv[2:] == ["dense"]:
        print("\n".join(bench_dense_hessian("swiss").lines()))
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        for row in rows():
            print("\n".join(row.lines()), flush=True)

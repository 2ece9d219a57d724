"""How close the measures come to what the machine can do, and how their cost grows.

- :func:`bench_surface_cnn`: the 51×51 filter-normalized surface of a small CNN on 1,000 Fashion-MNIST images,
  against the throughput of a plain batched forward pass of the same net (GFLOP/s at its best batch size), with
  the other ways of running the convolutions (channels-last, oneDNN tensors, ``torch.compile``) and a profile.
- :func:`bench_scaling`: basin radii, top Hessian eigenvalues and a 2-D slice of MLPs on the swiss roll, as the
  number of parameters and of data points grows.

    python bench/throughput.py [cnn scaling] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time

import torch
import torch.utils.mkldnn
from torch.func import functional_call
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from genviz_lib import curvature, data, landscape, models, volume

try:  # as the other benchmarks import it (bench/ on the path: python bench/run.py, python bench/throughput.py)
    from common import _loop_objective, _steady_allocator, Row, timed
except ModuleNotFoundError:  # imported as bench.throughput from the repository root
    from bench.common import Row, _loop_objective, _steady_allocator, timed

SURFACE_SIZE = 51
BATCHES = (250, 500, 1000, 2000, 4000)


_TICKS = os.sysconf("SC_CLK_TCK")


def _others_busy() -> float:
    """CPU seconds spent so far by every other process on the machine (all cores, from ``/proc/stat``)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:9]]
    own = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS - own.user - own.system


def _quiet(fn, tries: int = 5, wait: float = 10.0, share: float = 0.05):
    """``(fn(), seconds, clean)``: ``fn`` run when no other process is using the CPU, and run again (up to
    ``tries`` times) while other processes took more than ``share`` of one core during it. On two cores
    shared with other work, one busy neighbour can make a two-thread forward pass ten times slower (a worker
    thread loses its core and the others wait for it), so a disturbed timing says nothing about the paths."""
    for _ in range(tries):
        deadline = time.perf_counter() + wait
        while time.perf_counter() < deadline:
            before = _others_busy()
            time.sleep(0.1)
            if _others_busy() - before <= share * 0.1:
                break
        before = _others_busy()
        out, seconds = timed(fn)
        if _others_busy() - before <= share * seconds + 1.0 / _TICKS:
            return out, seconds, True
    return out, seconds, False


def _interleaved(fns: dict, rounds: int = 5, warmup: int = 1) -> dict:
    """The fastest of ``rounds`` timings of each function, the functions taking turns within each round (a round
    is repeated while another process was busy during it), and the minimum kept: the least disturbed run."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: math.inf for name in fns}

    def one_round():
        return {name: timed(fn)[1] for name, fn in fns.items()}

    for _ in range(rounds):
        for name, t in _quiet(one_round)[0].items():
            times[name] = min(times[name], t)
    return times


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _matmul_gflops(size: int = 2048) -> float:
    """The machine's float32 GEMM rate at the current thread count: the arithmetic ceiling for any layer."""
    A, B = torch.randn(size, size), torch.randn(size, size)
    t = _interleaved({"mm": lambda: A @ B})["mm"]
    return 2 * size ** 3 / t / 1e9


def _compiled_forward(net, X):
    """``(forward(params, X), seconds of the first call)`` with inductor, or ``(None, why)``."""
    fwd = torch.compile(lambda params, inputs: functional_call(net, params, (inputs,)), dynamic=False)
    params = {k: v.detach() for k, v in net.named_parameters()}
    try:
        with torch.no_grad():
            out, seconds = timed(lambda: fwd(params, X))
            if not torch.allclose(out, net(X), rtol=1e-5, atol=1e-6):
                return None, "its outputs differ from the eager model's"
    except Exception as err:  # an offline machine without a compiler, or an unsupported operator
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return (lambda: fwd(params, X)), seconds


def _layer_lines(net, X) -> list[str]:
    """Time and rate of each convolution at ``len(X)`` images: alone, its ReLU, and fused with it; for the first
    (it takes the data), also as a product with the data's patches, cut once."""
    out, h = [], X
    for i, conv in enumerate(m for m in net.features if isinstance(m, torch.nn.Conv2d)):
        on_data = landscape._DataConvReLU(conv)
        w, b = conv.weight, conv.bias
        z = conv(h)
        fns = {"conv": lambda: conv(h), "relu": lambda: torch.relu(z), "fused": lambda: on_data.direct(h, w, b)}
        if i == 0:
            fns["patches"] = lambda: on_data.by_columns(h, w, b)
        t = _interleaved(fns, rounds=9)
        flops = _flops(lambda: conv(h))
        line = (f"    conv {conv.in_channels:2d}→{conv.out_channels:2d} on {tuple(h.shape[1:])}: "
                f"{flops / 1e6:6.1f} MFLOP, conv {t['conv'] * 1e3:.2f} ms ({flops / t['conv'] / 1e9:5.1f} GFLOP/s) "
                f"+ ReLU {t['relu'] * 1e3:.2f} ms; fused {t['fused'] * 1e3:.2f} ms "
                f"({flops / t['fused'] / 1e9:5.1f} GFLOP/s)")
        if i == 0:
            line += f"; by patches {t['patches'] * 1e3:.2f} ms ({flops / t['patches'] / 1e9:5.1f} GFLOP/s)"
        out.append(line)
        h = torch.relu(z)
    return out


def _profile_table(f, theta, d1, d2, axis, rows: int = 8) -> list[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        landscape.slice_2d(f, theta, d1, d2, axis, axis)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=34)
    return [line for line in table.splitlines() if line.strip()]


def _with_patches(model, on: bool):
    """``model`` (a fused one) with its convolutions on the data computed from patches, or not."""
    for m in model.modules():
        if isinstance(m, landscape._DataConvReLU):
            m.columns = on
    return model


def bench_surface_cnn(rounds: int = 5) -> Row:
    """The 51×51 surface of ``SmallCNN((8, 16, 32))`` on 1,000 Fashion-MNIST images, measured against the
    throughput of the net's own batched forward pass (the same convolutions at the best batch size).

    1. The forward pass alone, by batch size: plain; with convolutions and ReLUs fused (oneDNN post-op); fused
       and the first layer from the data's patches; in channels-last memory format; on oneDNN tensors with
       prepacked weights (``rounds`` interleaved timings, the fastest kept); and compiled by inductor.
    2. The surface four ways — the objective as it comes, the objective fused but with the first layer as a
       oneDNN call, the objective with ``fuse=False``, and the plain loop that writes each vector into the model
       — one row of the grid (51 points) per call, the paths and the batched forward passes at the best batch
       size taking turns row by row (a row is timed again while another process used the CPU, see
       :func:`_quiet`); each path's time is the sum over its rows, and the throughputs it is held against are
       the batched forward passes' over the same span.
    3. The whole surface in one call of the objective, as a user would take it.
    """
    fm = data.load_fashion_mnist(n_train=1000, n_test=10, downsample=1)
    X, y = fm.train.X, fm.train.y
    torch.manual_seed(0)
    net = models.SmallCNN((8, 16, 32), in_channels=1, image_size=28).eval()
    threads = torch.get_num_threads()
    per_image = _flops(lambda: net(X[:1]))

    def images(B):
        return X.repeat(-(-B // len(X)), 1, 1, 1)[:B].contiguous()

    # 1. the forward pass by batch size, five ways; torch.compile
    params = dict(net.named_parameters())
    fused_net = _with_patches(landscape.fused_conv_relu(net), False)
    patches_net = _with_patches(landscape.fused_conv_relu(net), True)
    cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last)
    dnn_net = torch.utils.mkldnn.to_mkldnn(copy.deepcopy(net))
    rates = {}
    with torch.no_grad():
        for B in BATCHES:
            XB = images(B)
            XB_cl, XB_dnn = XB.contiguous(memory_format=torch.channels_last), XB.to_mkldnn()
            t = _interleaved({"plain": lambda: net(XB), "fused": lambda: functional_call(fused_net, params, (XB,)),
                              "fused, patches": lambda: functional_call(patches_net, params, (XB,)),
                              "channels-last": lambda: cl_net(XB_cl), "oneDNN tensors": lambda: dnn_net(XB_dnn)},
                             rounds)
            for name, seconds in t.items():
                rates.setdefault(name, {})[B] = per_image * B / seconds / 1e9
        best_batch = max(rates["plain"], key=rates["plain"].get)
        compiled, compile_info = _compiled_forward(net, X)
        t_forward = _interleaved({"eager": lambda: net(X), **({"compiled": compiled} if compiled else {})}, 2 * rounds)
        layers = _layer_lines(net, X)
    gemm = _matmul_gflops()

    # 2. the surface row by row, the paths and the batched forward passes taking turns
    theta = landscape.flatten(net)
    gen = torch.Generator().manual_seed(0)
    d1 = landscape.filter_normalized_direction(net, gen)
    d2 = landscape.orthogonalize(landscape.filter_normalized_direction(net, gen), d1)
    axis = landscape.grid(-1.0, 1.0, SURFACE_SIZE).float()
    small = axis[SURFACE_SIZE // 2 - 5: SURFACE_SIZE // 2 + 6]
    f = landscape.objective(net, X, y)
    chosen = any(m.columns for m in f._fused_model.modules() if isinstance(m, landscape._DataConvReLU))
    f_fused = landscape.objective(net, X, y)
    _with_patches(f_fused._fused_model, False)
    paths = {"default": f, "fused": f_fused, "plain": landscape.objective(net, X, y, fuse=False),
             "loop": _loop_objective(net, X, y)}
    assert f.fused and f_fused.fused and not paths["plain"].fused
    XB = images(best_batch)
    forward_reps = max(1, round(0.05 / (per_image * best_batch / rates["plain"][best_batch] / 1e9)))
    batched = {f"{name} forward": (lambda model=model: [functional_call(model, params, (XB,))
                                                         for _ in range(forward_reps)])
               for name, model in (("plain", net), ("fused", fused_net), ("patches", patches_net))}
    for g in paths.values():  # warm-up on an 11×11 grid
        landscape.slice_2d(g, theta, d1, d2, small, small)
    rows = {name: [] for name in paths}
    times = {name: 0.0 for name in [*paths, *batched]}
    disturbed = 0

    def one_row(points):
        out = {name: timed(fn)[1] for name, fn in batched.items()}
        for name, g in paths.items():
            out[name] = timed(lambda: g(points))
        return out

    with torch.no_grad():
        for j in range(SURFACE_SIZE):
            points = theta[None] + axis[:, None] * d1[None] + axis[j] * d2[None]  # row j, as slice_2d forms it
            out, _, clean = _quiet(lambda: one_row(points))
            disturbed += not clean
            for name, value in out.items():
                if name in paths:
                    rows[name].append(value[0][None])
                    value = value[1]
                times[name] += value
    surfaces = {name: torch.cat(r) for name, r in rows.items()}
    forward_flops = SURFACE_SIZE * forward_reps * per_image * best_batch
    peak = {name: forward_flops / times[f"{name} forward"] / 1e9 for name in ("plain", "fused", "patches")}

    # 3. the whole surface in one call; the same surface as row by row
    whole, t_whole, whole_clean = _quiet(lambda: landscape.slice_2d(f, theta, d1, d2, axis, axis), tries=2)
    loop = surfaces["loop"]
    gap = max(float(((z - loop).abs() / loop.abs().clamp_min(1e-6)).max()) for z in [*surfaces.values(), whole])
    surface_flops = SURFACE_SIZE ** 2 * per_image * len(X)
    achieved = {name: surface_flops / t / 1e9 for name, t in times.items() if name in paths}
    profile_lines = _profile_table(f, theta, d1, d2, small)
    profile_plain = _profile_table(paths["plain"], theta, d1, d2, small, rows=4)

    def rate_line(name):
        return f"{name:>15}: " + "  ".join(f"{B}: {r:5.1f}" for B, r in rates[name].items())

    compiled_note = (f"torch.compile (inductor, CPU): first call {compile_info:.1f} s, then "
                     f"{t_forward['compiled'] * 1e3:.2f} ms per forward against {t_forward['eager'] * 1e3:.2f} ms eager "
                     f"({t_forward['eager'] / t_forward['compiled']:.2f}×): it calls the same aten convolution, "
                     "cannot fuse the ReLU into it (that needs frozen weights, and here the weights are inputs) "
                     "and moves the activations to channels-last, which does not help here (above)"
                     if compiled else f"torch.compile (inductor, CPU) failed: {compile_info}")
    per_point = {name: 1e3 * times[name] / SURFACE_SIZE ** 2 for name in paths}
    labels = {"default": "as it comes", "fused": "fused, first layer by oneDNN", "plain": "fuse=False", "loop": "loop"}
    notes = [
        f"{threads} threads; timings taken while no other process used the CPU (see _quiet); "
        f"{per_image / 1e3:.1f} kFLOP per image, {surface_flops / 1e9:.0f} GFLOP for the surface "
        f"({SURFACE_SIZE ** 2:,} forward passes on {len(X):,} images); float32 GEMM at {gemm:.0f} GFLOP/s",
        f"batched forward pass alone, GFLOP/s by batch size (images), fastest of {rounds}:",
        *[rate_line(name) for name in rates],
        f"machine's conv throughput, plain forward at its best batch ({best_batch}): {peak['plain']:.1f} GFLOP/s "
        f"(fused {peak['fused']:.1f}, fused with the first layer by patches {peak['patches']:.1f}; timed between "
        f"the surface's rows, {disturbed} of {SURFACE_SIZE} rows disturbed by other processes after 5 tries)",
        "surface, GFLOP/s and fraction of the plain forward's throughput: " + "; ".join(
            f"{labels[name]} {achieved[name]:.1f} = {achieved[name] / peak['plain']:.0%}" for name in paths)
        + f" (as it comes: {achieved['default'] / peak['patches']:.0%} of the same forward pass batched)",
        "per point: " + ", ".join(f"{labels[name]} {per_point[name]:.2f} ms" for name in paths)
        + f"; the objective chose the first layer by patches: {'yes' if chosen else 'no'}",
        f"as it comes, in one slice_2d call: {t_whole:.2f} s ({surface_flops / t_whole / 1e9:.1f} GFLOP/s"
        f"{'' if whole_clean else ', disturbed'}); largest relative gap to the loop's surface {gap:.1e}",
        compiled_note,
        "per layer at 1,000 images:",
        *layers,
        f"profile of the objective as it comes on an {len(small)}×{len(small)} grid:",
        *[f"    {line}" for line in profile_lines],
        "the same with fuse=False: the ReLUs (clamp_min) are a pass of their own",
        *[f"    {line}" for line in profile_plain],
    ]
    return Row(f"{SURFACE_SIZE}×{SURFACE_SIZE} filter-normalized surface, small CNN "
               f"({models.count_parameters(net):,} parameters) on 1,000 Fashion-MNIST images (row by row)",
               genviz=("objective as it comes (fused; first layer by patches when faster)", times["default"]),
               others=[("objective fused, first layer by oneDNN", times["fused"]),
                       ("objective without fusion (fuse=False)", times["plain"]),
                       ("loop: write θ into the model, forward", times["loop"])],
               notes=notes)


# --------------------------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------------------------

MLP_WIDTHS = {"3.6k": models.SWISS_ROLL_WIDTHS, "36k": (84,) * 6, "270k": (232,) * 6}


def _measures(widths, points: int, directions: int) -> dict:
    torch.manual_seed(0)
    net = models.MLP(2, widths, 1)
    roll = data.swiss_roll(n_train=points, n_test=10, seed=0)
    f = landscape.objective(net, roll.train.X, roll.train.y)
    theta = landscape.flatten(net)
    cutoff = float(landscape.loss_at(f, theta)) + 0.5
    phi = landscape.random_directions(theta.numel(), directions, torch.Generator().manual_seed(0))
    radii, t_radii, clean_radii = _quiet(lambda: volume.basin_radius(f, theta, phi, cutoff, rtol=1e-3), tries=2)
    eig, t_eig, clean_eig = _quiet(lambda: curvature.top_eigenvalues(
        f, theta, k=10, tol=1e-3, return_info=True, generator=torch.Generator().manual_seed(0)), tries=2)
    d1, d2 = landscape.filter_normalized_plane(net, torch.Generator().manual_seed(0))
    axis = landscape.grid(-1.0, 1.0, 21).float()
    _, t_slice, clean_slice = _quiet(lambda: landscape.slice_2d(f, theta, d1, d2, axis, axis), tries=2)
    return dict(params=theta.numel(), points=points, directions=directions, radii=t_radii,
                evaluations=radii.evaluations, eig=t_eig, hvps=eig.hvps, slice=t_slice,
                disturbed={name for name, clean in (("radii", clean_radii), ("eig", clean_eig),
                                                    ("slice", clean_slice)) if not clean})


def bench_scaling(largest_directions: int = 100) -> list[str]:
    """Seconds for basin radii (100 random directions, cutoff = loss + 0.5, rtol 1e-3), the top-10 Hessian
    eigenvalues (tolerance 1e-3, with the number of HVPs) and a 21×21 filter-normalized slice, for untrained
    swiss-roll MLPs: parameters growing at 2,000 points, then points growing at 3.6k parameters.
    ``largest_directions`` shrinks the directions of the 270k-parameter net (the table says so)."""
    settings = [("3.6k", 2000), ("36k", 2000), ("270k", 2000), ("3.6k", 200), ("3.6k", 20000)]
    rows = [_measures(MLP_WIDTHS[size], points, largest_directions if size == "270k" else 100)
            for size, points in settings]
    head = (f"{'axis':<7}{'params':>9}{'points':>8} {'radii s':>9}{'(dirs, evals)':>15} {'eigen s':>9}"
            f"{'HVPs':>6} {'slice s':>9} {'slice ms/pt':>12}")
    lines = [f"scaling, untrained MLPs on the swiss roll, {torch.get_num_threads()} threads", head, "-" * len(head)]
    for axis_name, row in zip(("params", "params", "params", "points", "points"), rows):
        def sec(name):
            return f"{row[name]:8.2f}" + ("*" if name in row["disturbed"] else " ")

        lines.append(f"{axis_name:<7}{row['params']:>9,}{row['points']:>8,} {sec('radii')}"
                     f"{'(' + str(row['directions']) + ', ' + str(row['evaluations']) + ')':>15} "
                     f"{sec('eig')}{row['hvps']:>6} {sec('slice')} {1e3 * row['slice'] / 441:>12.2f}")

    def slopes(a, b, key):
        size = math.log(b[key] / a[key])
        return "  ".join(f"{m} {math.log(b[m] / a[m]) / size:4.2f}" for m in ("radii", "eig", "slice"))

    base = rows[0]
    lines += ["growth exponents d log(seconds) / d log(size), from the 3.6k × 2k row:",
              f"  params ×75 (to 270k): {slopes(base, rows[2], 'params')}",
              f"  points ×10 (to 20k):  {slopes(base, rows[4], 'points')}"]
    if any(row["disturbed"] for row in rows):
        lines.append("(* another process used the CPU during that timing, twice: it is slower than the machine)")
    if largest_directions != 100:
        lines.append(f"(the 270k-parameter row uses {largest_directions} directions, not 100)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[[], "cnn", "scaling"], default=[])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as torch starts)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, {_steady_allocator()}")
    for name in args.names or ["cnn", "scaling"]:
        start = time.perf_counter()
        lines = bench_surface_cnn().lines() if name == "cnn" else bench_scaling()
        print("\n" + "\n".join(lines) + f"\n  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

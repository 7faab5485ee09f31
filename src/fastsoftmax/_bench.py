"""A quick benchmark for users: ``fastsoftmax bench``.

Times the fused cross-entropy forward + backward against the copy floor
(np.copyto of the same bytes), interleaved call by call so that a noisy
machine slows all of them alike, on cold inputs (rotating copies larger than
the last-level cache), and the NumPy reference apart. Prints medians and
ratios.
"""

import itertools
import time

import numpy as np

DEFAULT_SHAPES = ((65536, 10), (16384, 100), (4096, 1000), (1024, 32000), (256, 128256))


def _rotation(shape, dtype, cold_bytes):
    rng = np.random.default_rng(0)
    base = (3 * rng.standard_normal(shape)).astype(dtype)
    copies = max(2, -(-cold_bytes // base.nbytes))
    return [base.copy() for _ in range(copies)]


def measure(
    shape,
    dtype="float32",
    n_threads=None,
    repeats=15,
    cold_bytes=64 * 2**20,
    with_reference=True,
    extra=None,
):
    """Median seconds per call of each implementation for one shape.

    Parameters
    ----------
    shape : tuple of int
        (n_samples, n_classes).
    dtype : str
        'float32' or 'float64'.
    n_threads : int, optional
        Passed to fastsoftmax.
    repeats : int
        Interleaved rounds; the median of each implementation is reported.
    with_reference : bool
        Also time the NumPy reference (slow at large sizes).
    extra : dict of name -> callable(x, target), optional
        More implementations, each timed in rounds of its own with the copy.

    Returns
    -------
    times : dict
        Implementation name -> median seconds.
    """
    import fastsoftmax
    from fastsoftmax import reference

    xs = _rotation(shape, dtype, cold_bytes)
    # Written once before timing, so that no timed call pays for first-touch page faults.
    outs = [x.copy() for x in xs]
    target = np.random.default_rng(1).integers(0, shape[1], size=shape[0])
    impls = {
        "copy": lambda x, o: np.copyto(o, x),
        "fastsoftmax": lambda x, o: fastsoftmax.cross_entropy_with_grad(
            x, target, n_threads=n_threads
        ),
        "fastsoftmax out=": lambda x, o: fastsoftmax.cross_entropy_with_grad(
            x, target, n_threads=n_threads, out=o
        ),
        "fastsoftmax inplace": lambda x, o: fastsoftmax.cross_entropy_with_grad(
            x, target, n_threads=n_threads, inplace=True
        ),
    }
    pairs = itertools.cycle(zip(xs, outs))
    result = _interleave(impls, pairs, repeats)
    # The others are timed apart, each with the copy again: their temporaries,
    # freed and returned to the system between calls, would make fastsoftmax's
    # fresh gradient page-fault (and the reverse).
    others = {name: lambda x, o, fn=fn: fn(x, target) for name, fn in (extra or {}).items()}
    if with_reference:
        others["reference"] = lambda x, o: reference.cross_entropy_with_grad(x, target)
    for name, fn in others.items():
        slow = name == "reference"
        t = _interleave(
            {"copy": impls["copy"], name: fn}, pairs, max(1, repeats // 3) if slow else repeats
        )
        result[name] = t[name]
    return result


def _interleave(impls, pairs, repeats):
    """Median seconds of each impl(x, out), called in turn on the rotating pairs."""
    times = {name: [] for name in impls}
    for fn in impls.values():  # warm up: page faults, thread start, dispatch
        fn(*next(pairs))
    for _ in range(repeats):
        for name, fn in impls.items():
            x, o = next(pairs)
            t0 = time.perf_counter()
            fn(x, o)
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def add_arguments(parser):
    """Options of ``fastsoftmax bench``."""
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float64"],
        help="dtype of the scores (default: float32)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="OpenMP threads (default: OpenMP's default)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=9,
        help="interleaved rounds per shape; medians are shown (default: 9)",
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="instead: fastsoftmax alternating with NumPy's BLAS, PyTorch and "
        "scikit-learn in one process, and 2 threads against 1 beside a busy "
        "process that the benchmark starts and stops (a few minutes)",
    )


def run(args):
    """Time the fused cross-entropy forward + backward on this machine.

    For each shape, the median of interleaved calls of fastsoftmax, the NumPy
    reference and a copy of the same bytes (the memory-bandwidth floor), on
    cold inputs; ratios to the copy and of the reference to fastsoftmax.
    """
    if args.mixed:
        from fastsoftmax import _bench_mixed

        _bench_mixed.print_report(n_threads=args.threads, rounds=max(10, 4 * args.repeats))
        return 0
    table(dtype=args.dtype, n_threads=args.threads, repeats=args.repeats)
    return 0


def table(shapes=DEFAULT_SHAPES, dtype="float32", n_threads=None, repeats=15, file=None):
    """Print a table of medians and ratios to the copy floor and the reference."""
    import fastsoftmax

    info = fastsoftmax.build_info()
    threads = n_threads or info["default_threads"]
    print(
        f"fastsoftmax {info['version']}, {info['simd']}, OpenMP "
        f"{'on' if info['openmp'] else 'off'}, {threads} thread(s), {dtype}, cold inputs",
        file=file,
    )
    header = (
        f"{'shape':>14} {'copy ms':>9} {'fused ms':>9} {'x copy':>7} {'out= ms':>9} "
        f"{'x copy':>7} {'ref ms':>9} {'ref / fused':>11}"
    )
    print(header, file=file)
    rows = []
    for shape in shapes:
        small = shape[0] * shape[1] <= 4_200_000
        t = measure(shape, dtype, n_threads, repeats, with_reference=small)
        ref = t.get("reference")
        rows.append((shape, t))
        # the reference is skipped at large sizes: '-' there, as in the README
        ref_ms = f"{1e3 * ref:.2f}" if ref else "-"
        ref_ratio = f"{ref / t['fastsoftmax']:.1f}" if ref else "-"
        print(
            f"{shape[0]:>6} x {shape[1]:<6} {1e3 * t['copy']:9.3f} {1e3 * t['fastsoftmax']:9.3f} "
            f"{t['fastsoftmax'] / t['copy']:7.2f} "
            f"{1e3 * t['fastsoftmax out=']:9.3f} {t['fastsoftmax out='] / t['copy']:7.2f} "
            f"{ref_ms:>9} {ref_ratio:>11}",
            file=file,
        )
    return rows

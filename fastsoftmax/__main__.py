"""Command line: ``fastsoftmax`` / ``python -m fastsoftmax``."""

import argparse
import sys
import time


def _demo(args):
    import numpy as np

    import fastsoftmax
    from fastsoftmax import reference

    fastsoftmax.show_config()
    rng = np.random.default_rng(0)
    n, c = args.samples, args.classes
    logits = rng.standard_normal((n, c)).astype(np.float32)
    target = rng.integers(0, c, size=n)
    print(f"\nfused cross-entropy forward + backward, {n} x {c} float32:")
    t0 = time.perf_counter()
    loss, grad = fastsoftmax.cross_entropy_with_grad(logits, target)
    t1 = time.perf_counter()
    ref_loss, ref_grad, _ = reference.cross_entropy_with_grad(logits, target)
    t2 = time.perf_counter()
    err = float(np.max(np.abs(grad - ref_grad)))
    print(f"  loss {float(loss):.6f} (NumPy reference {float(ref_loss):.6f}), "
          f"max gradient difference {err:.2e}")
    print(f"  fastsoftmax {1e3 * (t1 - t0):.2f} ms, NumPy reference {1e3 * (t2 - t1):.2f} ms")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastsoftmax", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="show the build and time one fused call (default)")
    demo.add_argument("--samples", type=int, default=4096)
    demo.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo"] + list(argv or []))
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())

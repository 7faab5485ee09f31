"""Command line: ``fastsoftmax`` / ``python -m fastsoftmax``.

Subcommands: ``train`` (the default) trains a SoftmaxRegression and reports
its accuracy; ``demo`` shows the build and times one fused call; ``bench``
prints a quick table of speed ratios on this machine.
"""

import argparse
import importlib
import inspect
import sys
import time

# Each subcommand: name -> (module, help). The module provides
# ``add_arguments(parser)`` and ``run(args) -> int``; it is imported only
# when the command line is parsed, and should keep its own heavy imports
# inside ``run``. A new subcommand is one more entry.
SUBCOMMANDS = {
    "train": (
        "fastsoftmax.cli_train",
        "train a softmax regression model and report its accuracy (default)",
    ),
    "demo": ("fastsoftmax.__main__", "show the build and time one fused cross-entropy call"),
    "bench": (
        "fastsoftmax._bench",
        "time the fused cross-entropy against the NumPy reference "
        "and the copy floor on this machine (under a minute)",
    ),
}
DEFAULT = "train"


def add_arguments(parser):
    """Options of ``demo``."""
    parser.add_argument("--samples", type=int, default=4096, help="rows (default: 4096)")
    parser.add_argument("--classes", type=int, default=1000, help="classes (default: 1000)")


def run(args):
    """Show the build, then time one fused cross-entropy call against the NumPy reference."""
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
    print(
        f"  loss {float(loss):.6f} (NumPy reference {float(ref_loss):.6f}), "
        f"max gradient difference {err:.2e}"
    )
    print(f"  fastsoftmax {1e3 * (t1 - t0):.2f} ms, NumPy reference {1e3 * (t2 - t1):.2f} ms")
    return 0


def _module(name):
    module_name = SUBCOMMANDS[name][0]
    if module_name == "fastsoftmax.__main__":  # this file, also when run as __main__
        return sys.modules[__name__]
    return importlib.import_module(module_name)


def build_parser():
    """The top-level parser, with one subparser per entry of SUBCOMMANDS."""
    parser = argparse.ArgumentParser(
        prog="fastsoftmax",
        description="fastsoftmax command line. Without a subcommand, runs "
        f"'{DEFAULT}' (see 'fastsoftmax {DEFAULT} --help').",
    )
    from fastsoftmax import __version__

    parser.add_argument("--version", action="version", version=f"fastsoftmax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (_, help_text) in SUBCOMMANDS.items():
        module = _module(name)
        description = getattr(module, "DESCRIPTION", None) or inspect.cleandoc(module.run.__doc__)
        p = sub.add_parser(
            name,
            help=help_text,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # No subcommand (nothing, or options only): the default one.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = [DEFAULT] + argv
    args = build_parser().parse_args(argv)
    return args._run(args)


if __name__ == "__main__":
    sys.exit(main())

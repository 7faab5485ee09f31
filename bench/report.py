"""The README's benchmark table and plot.

Times the fused cross-entropy forward + backward (mean loss and d loss /
d logits) for each shape, interleaving the implementations call by call on
cold inputs (fastsoftmax.bench.measure), and writes:

  bench/results.md   a Markdown table: medians in ms and ratios to the copy floor
  bench/results.png  the same as a bar chart (when matplotlib is installed)

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/report.py [--repeats 21]
"""

import argparse
import os
import platform

import numpy as np

import fastsoftmax
from fastsoftmax._bench import DEFAULT_SHAPES, measure

HERE = os.path.dirname(os.path.abspath(__file__))


def rivals(shape, dtype, n_threads):
    """Other libraries' fused forward + backward, where installed."""
    out = {}
    try:
        import torch
        import torch.nn.functional as F

        def torch_step(x, t, k):
            torch.set_num_threads(k)
            xt = torch.from_numpy(x).requires_grad_(True)
            F.cross_entropy(xt, torch.from_numpy(t)).backward()
            return xt.grad

        out["torch 1 thread"] = lambda x, t: torch_step(x, t, 1)
        out[f"torch {n_threads} threads"] = lambda x, t: torch_step(x, t, n_threads)
    except ImportError:
        pass
    try:
        from sklearn._loss.loss import HalfMultinomialLoss

        loss = HalfMultinomialLoss(n_classes=shape[1])
        out["scikit-learn"] = lambda x, t: loss.loss_gradient(
            y_true=t.astype(x.dtype), raw_prediction=x, n_threads=n_threads
        )
    except ImportError:
        pass
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    info = fastsoftmax.build_info()
    threads = args.threads or info["default_threads"]
    blas = "unknown BLAS"
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{p['internal_api']} {p.get('version')} x{p['num_threads']}" for p in threadpool_info()
        )
    except ImportError:
        pass
    header = (
        f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"fastsoftmax {info['version']} ({info['simd']}), NumPy {np.__version__}, "
        f"{threads} threads, {args.dtype}, cold inputs; runtimes: {blas}"
    )
    rows, names = [], None
    for shape in DEFAULT_SHAPES:
        small = shape[0] * shape[1] <= 4_200_000
        t = measure(
            shape,
            args.dtype,
            threads,
            args.repeats,
            with_reference=small,
            extra=rivals(shape, args.dtype, threads),
        )
        names = names or list(t)
        rows.append((shape, t))
        print(shape, {k: round(1e3 * v, 3) for k, v in t.items()}, flush=True)
    names = [n for n in names if n != "copy"]
    lines = [
        f"<!-- {header} -->",
        "",
        "| N x C | copy floor | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for shape, t in rows:
        cells = [f"{1e3 * t[n]:.2f} ms ({t[n] / t['copy']:.1f}x)" if n in t else "-" for n in names]
        lines.append(
            f"| {shape[0]} x {shape[1]} | {1e3 * t['copy']:.2f} ms | " + " | ".join(cells) + " |"
        )
    table = "\n".join(lines)
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write(header + "\n\n" + table + "\n")
    print(header)
    print(table)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return 0
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ratios = [t[name] / t["copy"] if name in t else np.nan for _, t in rows]
        ax.bar(np.arange(len(rows)) + k * width, ratios, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{s[0]} x {s[1]}" for s, _ in rows])
    ax.set_ylabel("time / copy of the same bytes (log scale)")
    ax.set_title("fused cross-entropy forward + backward", fontsize=11)
    ax.legend(fontsize=8, ncol=2)
    fig.text(0.01, 0.01, header, fontsize=6)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(os.path.join(HERE, "results.png"), dpi=110)
    print("wrote bench/results.md and bench/results.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A vocabulary split across two processes (torch.distributed, gloo) gives the
whole vocabulary's loss and gradients."""

import datetime

import numpy as np
import pytest

import fastsoftmax as fs

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

N, D, V = 64, 16, 101
CUTS = [0, 60, V]  # rank r holds classes CUTS[r] .. CUTS[r + 1] - 1
OPTIONS = dict(z_loss=1e-3, softcap=5.0, ignore_index=-1)


def _problem():
    """The same inputs on every rank."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D))
    w = 0.5 * rng.standard_normal((V, D))
    b = rng.standard_normal(V)
    t = rng.integers(0, V, N)
    t[:4] = -1
    return x, w, b, t


def _worker(rank, init_file):
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    try:
        x, w, b, t = _problem()
        lo, hi = CUTS[rank], CUTS[rank + 1]
        w_part, b_part = w[lo:hi], b[lo:hi]
        # 1. each rank's log-sum-exp over its classes; the whole one from all of them
        mine = fs.linear_logsumexp(x, w_part, linear_bias=b_part, softcap=5.0, n_threads=1)
        parts = [torch.empty(N, dtype=torch.float64) for _ in range(2)]
        dist.all_gather(parts, torch.from_numpy(mine))
        lse = fs.logsumexp(torch.stack(parts).numpy(), axis=0)
        # 2. each rank's share of the loss and gradients; loss and grad_input add up
        loss, gx, gw, gb = fs.linear_cross_entropy_with_grad(
            x, w_part, t, linear_bias=b_part, class_offset=lo, total_classes=V, lse=lse,
            n_threads=1, **OPTIONS,
        )  # fmt: skip
        total = torch.tensor([float(loss)], dtype=torch.float64)
        dist.all_reduce(total)
        grad_x = torch.from_numpy(np.ascontiguousarray(gx))
        dist.all_reduce(grad_x)
        whole = fs.linear_cross_entropy_with_grad(x, w, t, linear_bias=b, n_threads=1, **OPTIONS)
        np.testing.assert_allclose(total.item(), whole[0], rtol=1e-12)
        np.testing.assert_allclose(grad_x.numpy(), whole[1], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(gw, whole[2][lo:hi], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(gb, whole[3][lo:hi], rtol=1e-10, atol=1e-14)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend"
)
def test_two_processes_holding_half_a_vocabulary_each(tmp_path):
    import torch.multiprocessing as mp

    # A failure in either process ends both and raises here.
    mp.spawn(_worker, args=(str(tmp_path / "store"),), nprocs=2, join=True)

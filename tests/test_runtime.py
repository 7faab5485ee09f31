"""fastsoftmax's OpenMP wait policy (fastsoftmax/_runtime.py), seen from fresh interpreters."""

import json
import os
import subprocess
import sys

import pytest

import fastsoftmax
from fastsoftmax import _runtime

# Run in a fresh interpreter: imports fastsoftmax, then reports the environment,
# the policy fastsoftmax says it applied, and what each libgomp in the process
# says of its spin count (omp_display_env, on Linux).
PROBE = r"""
import ctypes, json, os, sys
import fastsoftmax
spins = {}
if os.path.exists("/proc/self/maps"):
    paths = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line})
    for path in paths:
        lib = ctypes.CDLL(path)
        if not hasattr(lib, "omp_display_env"):
            continue
        r, w = os.pipe()
        saved = os.dup(2)
        os.dup2(w, 2)
        lib.omp_display_env(1)
        os.dup2(saved, 2)
        os.close(w)
        text = os.read(r, 1 << 16).decode()
        os.close(r)
        for line in text.splitlines():
            if "GOMP_SPINCOUNT" in line:
                spins[path] = line.split("=", 1)[1].strip().strip("'")
print(json.dumps({
    "env": os.environ.get("GOMP_SPINCOUNT"),
    "policy": fastsoftmax.build_info()["openmp_wait_policy"],
    "spins": spins,
}))
"""


def probe(extra_env=None):
    env = {k: v for k, v in os.environ.items() if k not in _runtime.USER_VARIABLES}
    env.update(extra_env or {})
    args = [sys.executable, "-c", PROBE]
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def our_spin(result):
    """The spin count of the libgomp fastsoftmax loaded (the only one without extras)."""
    if not fastsoftmax.openmp_enabled() or not result["spins"]:
        pytest.skip("no libgomp with omp_display_env in this process")
    assert len(result["spins"]) == 1, result
    return next(iter(result["spins"].values()))


def test_default_policy_is_applied_and_the_environment_restored():
    result = probe()
    # set only while the extension loaded: a libgomp loaded later reads its own
    assert result["env"] is None
    if not fastsoftmax.openmp_enabled():
        assert result["policy"] == "none: a serial build"
        return
    assert str(_runtime.SPIN_COUNT) in result["policy"]
    assert our_spin(result) == str(_runtime.SPIN_COUNT)


@pytest.mark.parametrize(
    "name, value", [("GOMP_SPINCOUNT", "12345"), ("OMP_WAIT_POLICY", "active")]
)
def test_a_policy_the_user_set_is_left_alone(name, value):
    result = probe({name: value})
    assert result["policy"] == f"as set by {name}={value}"
    spin = our_spin(result)
    assert spin != str(_runtime.SPIN_COUNT)
    if name == "GOMP_SPINCOUNT":
        assert spin == value


def test_a_shared_runtime_loaded_first_keeps_its_policy():
    # Where another package loaded the same libgomp first, its spin count
    # stays, and build_info() says so.
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("reads /proc/self/maps")
    code = (
        "import ctypes, ctypes.util, json, sys; name = ctypes.util.find_library('gomp'); "
        "name and ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL); "
        "import fastsoftmax; print(json.dumps([name, fastsoftmax.build_info()]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in _runtime.USER_VARIABLES}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    name, info = json.loads(run.stdout)
    if name is None or not info["openmp"]:
        pytest.skip("no system libgomp")
    maps_after = probe()["spins"]
    if not any(os.path.basename(p).startswith("libgomp.so") for p in maps_after):
        pytest.skip("this build does not use the system libgomp")
    assert info["openmp_wait_policy"] == "that of the libgomp another package loaded first"


def test_the_policy_is_in_build_info():
    assert fastsoftmax.build_info()["openmp_wait_policy"] == _runtime.wait_policy
    assert _runtime.wait_policy != "not loaded"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity calls")
def test_a_worker_on_the_callers_cpu_moves_off_and_is_not_pinned():
    # What a worker thread does when woken on its caller's CPU (csrc/fs_threads.h),
    # run here on this thread.
    from fastsoftmax import _kernels

    allowed = os.sched_getaffinity(0)
    cpu = _kernels.current_cpu()
    assert cpu in allowed
    _kernels.leave_cpu(cpu)
    assert os.sched_getaffinity(0) == allowed  # widened back
    if len(allowed) > 1:
        assert _kernels.current_cpu() != cpu
    _kernels.leave_cpu(-1)  # no CPU: nothing happens
    assert os.sched_getaffinity(0) == allowed

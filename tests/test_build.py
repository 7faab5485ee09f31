"""What the build reports about itself: OpenMP, threads, compiler, SIMD."""

import os
import platform

import numpy as np
import pytest

import fastsoftmax

# The documented keys of build_info() and the type of each value.
KEY_TYPES = {
    "version": str,
    "openmp": bool,
    "default_threads": int,
    "openmp_wait_policy": str,
    "openmp_library": str,
    "scipy": str,
    "scikit-learn": str,
    "threadpoolctl": str,
    "torch": str,
    "compiler": str,
    "simd": str,
    "two_byte": str,
    "ml_dtypes": str,
}


def openmp_expected():
    """False only when the build was asked to skip OpenMP (as setup.py reads it)."""
    flag = os.environ.get("FASTSOFTMAX_NO_OPENMP", "").strip().lower()
    return flag not in {"1", "true", "yes", "on"}


def test_openmp_enabled():
    if not openmp_expected():
        pytest.skip("FASTSOFTMAX_NO_OPENMP is set: a serial build is expected")
    assert fastsoftmax.openmp_enabled() is True
    assert fastsoftmax.build_info()["openmp"] is True


def test_openmp_flags_agree():
    assert isinstance(fastsoftmax.openmp_enabled(), bool)
    assert fastsoftmax.build_info()["openmp"] is fastsoftmax.openmp_enabled()
    if not fastsoftmax.openmp_enabled():
        # A serial build runs one thread whatever OMP_NUM_THREADS says.
        assert fastsoftmax.build_info()["default_threads"] == 1


def test_build_info_keys_and_types():
    info = fastsoftmax.build_info()
    assert isinstance(info, dict)
    for key, kind in KEY_TYPES.items():
        assert key in info, key
        assert type(info[key]) is kind, (key, type(info[key]))
    assert info["version"] == fastsoftmax.__version__
    assert info["default_threads"] >= 1
    assert info["compiler"].strip()
    assert info["simd"].strip()
    # The extra keys describe the machine and the runtime.
    assert info["machine"] == platform.machine()
    assert info["python"] == platform.python_version()
    assert info["numpy"] == np.__version__


def test_build_info_is_a_fresh_dict():
    first = fastsoftmax.build_info()
    first["version"] = "changed"
    assert fastsoftmax.build_info()["version"] == fastsoftmax.__version__


def test_default_threads_follows_omp_num_threads():
    """A fresh interpreter with OMP_NUM_THREADS=1 reports one default thread."""
    if not fastsoftmax.openmp_enabled():
        pytest.skip("built without OpenMP")
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(fastsoftmax.__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=root)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fastsoftmax; print(fastsoftmax.build_info()['default_threads'])",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=root,  # the child imports the package under test, not a checkout's source
    )
    assert out.stdout.strip() == "1"


def test_show_config_prints_every_key(capsys):
    result = fastsoftmax.show_config()
    assert result is None
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    info = fastsoftmax.build_info()
    assert len(lines) == len(info)
    for key, value in info.items():
        matching = [line for line in lines if line.split(":", 1)[0].strip() == key]
        assert len(matching) == 1, (key, printed)
        assert matching[0].split(":", 1)[1].strip() == str(value)


def test_the_source_folder_does_not_shadow_the_installed_package():
    # With the src layout, Python started where the README's commands run (the
    # clone's root) imports the package that was installed, which has its
    # compiled extension, and never a source folder without one.
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").exists():
        pytest.skip("not run from a source tree")
    assert not (root / "fastsoftmax").exists()
    code = "import fastsoftmax; fastsoftmax.show_config(); print(fastsoftmax.__file__)"
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "openmp" in run.stdout


def test_kernels_call_no_libm_clamp():
    # fminf/fmaxf (and the double ones) inside an exp loop are out-of-line libm
    # calls under GCC: the loop then runs scalar, 16 times slower, and every
    # numeric test still passes. The extension's imported symbols tell.
    import shutil
    import subprocess

    from fastsoftmax import _kernels

    nm = shutil.which("nm")
    if platform.system() != "Linux" or nm is None:
        pytest.skip("reads an ELF symbol table with nm")
    run = subprocess.run(
        [nm, "-D", "--undefined-only", _kernels.__file__], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    imported = {line.split()[-1].split("@")[0] for line in run.stdout.splitlines() if line.strip()}
    assert imported & {"fmin", "fmax", "fminf", "fmaxf", "expf", "exp2f", "exp2"} == set()


def test_build_info_names_the_runtime_and_the_optional_libraries():
    from importlib import metadata

    info = fastsoftmax.build_info()
    for name in ("scipy", "scikit-learn", "threadpoolctl", "torch"):
        try:
            expected = metadata.version(name)
        except metadata.PackageNotFoundError:
            expected = "not installed"
        assert info[name] == expected
    if not info["openmp"]:
        assert info["openmp_library"] == "none"
    elif os.path.exists("/proc/self/maps"):
        assert "libgomp" in info["openmp_library"]
        with open("/proc/self/maps") as maps:
            assert any(info["openmp_library"].split(", ")[0] in line for line in maps)

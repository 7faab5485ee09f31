"""The compiled module's type stubs agree with it, and mypy finds them.

``src/fastsoftmax/_kernels.pyi`` describes the Cython extension; mypy's stubtest
imports the extension and compares every name and signature with the stub.
The package ships ``py.typed``, so mypy reads the stubs of an installed
fastsoftmax as well as of a source tree.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import fastsoftmax
from fastsoftmax import _kernels

pytest.importorskip("mypy")

PACKAGE = Path(fastsoftmax.__file__).resolve().parent
STUB = PACKAGE / "_kernels.pyi"


def _installed():
    """True when fastsoftmax is imported from site-packages, not from a tree."""
    roots = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    return PACKAGE.parent in roots or PACKAGE.parent.name in {"site-packages", "dist-packages"}


def _run(args, cwd, mypy_path=None):
    """Run ``python -m args`` where both mypy and the import see fastsoftmax."""
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    paths = [] if mypy_path is None else [str(mypy_path)]
    if not _installed():
        # A source tree: mypy reads its stubs, the import finds its extension.
        paths.append(str(PACKAGE.parent))
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PACKAGE.parent), env.get("PYTHONPATH")])
        )
    if paths:
        env["MYPYPATH"] = os.pathsep.join(paths)
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_stub_and_marker_ship_with_the_package():
    assert STUB.is_file()
    assert (PACKAGE / "py.typed").is_file()
    assert Path(_kernels.__file__).resolve().parent == PACKAGE


def test_stubtest(tmp_path):
    out = _run(["mypy.stubtest", "fastsoftmax._kernels"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout, out.stdout + out.stderr


def test_mypy_reads_the_stub(tmp_path):
    code = (
        "from fastsoftmax import _kernels\n"
        "reveal_type(_kernels.simd)\n"
        "reveal_type(_kernels.check_labels)\n"
    )
    out = _run(["mypy", "--no-incremental", "--no-error-summary", "-c", code], tmp_path)
    text = out.stdout + out.stderr
    # mypy writes builtins with or without their module, by version.
    text = text.replace("builtins.", "")
    assert 'Revealed type is "def () -> str"' in text, text
    assert "-> tuple[int, int, float]" in text, text


def test_stubtest_catches_a_wrong_stub(tmp_path):
    """A control: stubtest fails on a stub whose signature is wrong.

    The wrong stub sits in a stub-only copy of the package that mypy reads
    first; the runtime module is the real one.
    """
    stubs = tmp_path / "stubs" / "fastsoftmax"
    stubs.mkdir(parents=True)
    (stubs / "__init__.pyi").write_text("")
    text = STUB.read_text()
    assert "def simd() -> str: ..." in text
    (stubs / "_kernels.pyi").write_text(
        text.replace("def simd() -> str: ...", "def simd(level: int) -> str: ...")
    )
    out = _run(["mypy.stubtest", "fastsoftmax._kernels"], tmp_path, stubs.parent)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "fastsoftmax._kernels.simd" in out.stdout, out.stdout + out.stderr
    assert "level" in out.stdout, out.stdout + out.stderr

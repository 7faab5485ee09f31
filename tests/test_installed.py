"""What a built and installed fastsoftmax holds.

The checks that depend on how the package was built run when the build's
environment says so: ``FASTSOFTMAX_TEST_INSTALLED=1`` (the suite runs against
an installed wheel, as cibuildwheel and tools/check_wheel.sh run it),
``FASTSOFTMAX_REQUIRE_OPENMP=1`` and ``FASTSOFTMAX_NO_OPENMP=1`` (the build
switches of setup.py).
"""

import os
import sys
from pathlib import Path

import pytest

import fastsoftmax


def _flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


PACKAGE = Path(fastsoftmax.__file__).resolve().parent
installed_only = pytest.mark.skipif(
    not _flag("FASTSOFTMAX_TEST_INSTALLED"), reason="FASTSOFTMAX_TEST_INSTALLED is not set"
)


@installed_only
def test_imported_from_the_environment():
    prefix = Path(sys.prefix).resolve()
    assert prefix in PACKAGE.parents, (PACKAGE, prefix)
    # ... and not from a source tree next to the tests.
    assert not (PACKAGE.parent / "setup.py").exists()
    assert not (PACKAGE.parent / "csrc").exists()


@installed_only
def test_no_sources_in_the_installed_package():
    sources = [p.name for p in PACKAGE.rglob("*") if p.suffix in {".c", ".h", ".pyx", ".pxd"}]
    assert sources == []
    assert (PACKAGE / "_kernels.pyi").is_file()
    assert (PACKAGE / "py.typed").is_file()


@pytest.mark.skipif(
    not _flag("FASTSOFTMAX_REQUIRE_OPENMP"), reason="FASTSOFTMAX_REQUIRE_OPENMP is not set"
)
def test_openmp_when_required():
    assert fastsoftmax.openmp_enabled() is True


@pytest.mark.skipif(not _flag("FASTSOFTMAX_NO_OPENMP"), reason="FASTSOFTMAX_NO_OPENMP is not set")
def test_serial_when_asked():
    assert fastsoftmax.openmp_enabled() is False
    assert fastsoftmax.build_info()["default_threads"] == 1

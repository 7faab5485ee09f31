"""Mutation testing of the C kernels: does some test fail for every small change?

Each mutant changes one token of one formula in csrc/ (an operator, a
comparison, a constant); the extension is rebuilt with it and the numeric
tests run until one fails. A mutant that no test kills is printed: either
it is equivalent (say why) or a test is missing.

    python tools/mutate.py [--count 60] [--seed 0] [--tests tests/test_x.py ...]
    python tools/mutate.py --only xent.h:395     # every mutant of one line

Needs a C compiler with OpenMP and Cython's output of the extension (run a
build first). Builds for this machine's CPU only (-march=native, no runtime
dispatch), in a temporary copy of the package; the tree is not touched.
"""

import argparse
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = ["fs_math.h", "reduce.h", "softmax.h", "xent.h", "linear_xent.h"]
NUMERIC_TESTS = [
    "tests/test_fs_math.py",
    "tests/test_kernel_paths.py",
    "tests/test_xent.py",
    "tests/test_special.py",
    "tests/test_semantics.py",
    "tests/test_reference_xent.py",
    "tests/test_linear_xent.py",
    "tests/test_properties.py",
]
# One-token changes: (pattern, replacement). Applied to one match at a time.
OPERATORS = [
    (r"(?<=[\w)\]]) \+ (?=[\w(])", " - "),
    (r"(?<=[\w)\]]) - (?=[\w(])", " + "),
    (r"(?<=[\w)\]]) \* (?=[\w(])", " / "),
    (r"(?<=[\w)\]]) / (?=[\w(])", " * "),
    (r" < ", " <= "),
    (r" <= ", " < "),
    (r" > ", " >= "),
    (r" >= ", " > "),
    (r" == ", " != "),
    (r" != ", " == "),
    (r" && ", " || "),
    (r" \|\| ", " && "),
    (r"(?<![\w.])1\.0(?![\w.])", "2.0"),
    (r"(?<![\w.])0\.5(?![\w.])", "0.25"),
    (r"(?<![\w.])2\.0(?![\w.])", "1.0"),
    (r"(?<=1\.0 / )(\d+)\.0", lambda m: f"{int(m.group(1)) + 1}.0"),
    (r"(?<=1\.0f / )(\d+)\.0f", lambda m: f"{int(m.group(1)) + 1}.0f"),
]


def code_lines(text):
    """Indices of lines that hold code (not comments, directives other than #define, or blanks)."""
    out, in_comment = [], False
    for i, line in enumerate(text.splitlines()):
        s = line.strip()
        if in_comment:
            in_comment = "*/" not in s
            continue
        if s.startswith("/*"):
            in_comment = "*/" not in s
            continue
        # Macros that hold formulas (#define) are mutated; other directives not.
        if (
            not s
            or s.startswith(("//", "*"))
            or (s.startswith("#") and not s.startswith("#define"))
        ):
            continue
        out.append(i)
    return out


def mutants():
    """Every (file, line, column, old, new) single-token mutant of the formulas."""
    found = []
    for name in FILES:
        lines = (ROOT / "csrc" / name).read_text().splitlines()
        for i in code_lines("\n".join(lines)):
            code = lines[i].split("/*")[0]
            for pattern, repl in OPERATORS:
                for m in re.finditer(pattern, code):
                    new = repl(m) if callable(repl) else repl
                    found.append((name, i, m.start(), m.group(0), new))
    return found


def build(work, compiled, mutant=None):
    """Rebuild the extension in ``work`` with ``mutant`` applied; True on success."""
    csrc = work / "csrc"
    shutil.rmtree(csrc, ignore_errors=True)
    shutil.copytree(ROOT / "csrc", csrc)
    if mutant:
        name, i, col, old, new = mutant
        path = csrc / name
        lines = path.read_text().splitlines(keepends=True)
        lines[i] = lines[i][:col] + new + lines[i][col + len(old) :]
        path.write_text("".join(lines))
    flags = ["-O2", "-march=native", "-fPIC", "-fopenmp", "-fno-math-errno"]
    flags += ["-fno-trapping-math", "-DFS_NO_DISPATCH", f"-I{csrc}"]
    objs = []
    for source in sorted(csrc.glob("*.c")):  # every C file the extension is built from
        obj = work / (source.stem + ".o")
        run = subprocess.run(
            ["gcc", *flags, "-c", str(source), "-o", str(obj)], capture_output=True
        )
        if run.returncode:
            return False
        objs.append(str(obj))
    so = work / "pkg" / "fastsoftmax" / compiled.name
    run = subprocess.run(
        ["gcc", "-shared", "-fopenmp", str(work / "kernels.o"), *objs, "-lm", "-o", str(so)],
        capture_output=True,
    )
    return run.returncode == 0


def killed(work, tests, timeout):
    env = dict(os.environ, PYTHONPATH=str(work / "pkg"))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True
    return run.returncode != 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tests", nargs="*", default=NUMERIC_TESTS)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--only", metavar="FILE:LINE", help="every mutant of this line of csrc/")
    args = parser.parse_args(argv)

    import fastsoftmax._kernels as installed

    compiled = pathlib.Path(installed.__file__)
    cython_c = ROOT / "src" / "fastsoftmax" / "_kernels.c"
    if not cython_c.exists():
        sys.exit(f"no {cython_c}: build the extension first (pip install .)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="fastsoftmax-mutants-"))
    shutil.copytree(compiled.parent, work / "pkg" / "fastsoftmax")
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        ["gcc", "-O1", "-fPIC", "-fopenmp", f"-I{include}", f"-I{ROOT / 'csrc'}", "-c"]
        + [str(cython_c), "-o", str(work / "kernels.o")],
        check=True,
    )
    if not build(work, compiled) or killed(work, args.tests, args.timeout):
        sys.exit("the unmutated build fails its tests: nothing to measure")

    pool = mutants()
    if args.only:
        name, line = args.only.rsplit(":", 1)
        chosen = [m for m in pool if m[0] == name and m[1] == int(line) - 1]
    else:
        chosen = random.Random(args.seed).sample(pool, min(args.count, len(pool)))
    print(f"{len(pool)} mutants in csrc/, trying {len(chosen)}", flush=True)
    survivors, t0 = [], time.time()
    for k, m in enumerate(chosen, 1):
        name, i, _, old, new = m
        if not build(work, compiled, m):
            status = "does not compile"
        elif killed(work, args.tests, args.timeout):
            status = "killed"
        else:
            status = "SURVIVED"
            survivors.append(m)
        line = (ROOT / "csrc" / name).read_text().splitlines()[i].strip()
        print(
            f"[{k}/{len(chosen)} {time.time() - t0:5.0f}s] {status}: {name}:{i + 1} "
            f"{old.strip()!r} -> {new.strip()!r}   {line}",
            flush=True,
        )
    print(f"{len(chosen)} mutants, {len(survivors)} survived")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())

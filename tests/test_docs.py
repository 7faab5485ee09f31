"""The documentation site's sources: every public name in the API reference,
every gallery example a script sphinx-gallery runs, every docstring example
right.

The pages themselves are built (warnings as errors, the examples run) by
``sphinx-build -W --keep-going -b html docs docs/_build/html`` in CI.
"""

import ast
import re
from pathlib import Path

import pytest

import fastsoftmax
import fastsoftmax.datasets
import fastsoftmax.reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="no docs/ beside the tests")


def listed(text, default_module):
    """{module: set of names} of the autosummary entries of a page."""
    found, module, in_summary = {}, default_module, False
    for line in text.splitlines():
        m = re.match(r"\.\. currentmodule:: (\S+)", line)
        if m:
            module = m.group(1)
            continue
        if line.startswith(".. autosummary::"):
            in_summary = True
            continue
        if in_summary:
            entry = line.strip()
            if not entry or entry.startswith(":"):
                continue
            if not line.startswith("   "):
                in_summary = False
                continue
            found.setdefault(module, set()).add(entry)
    return found


def test_every_public_name_is_in_the_api_reference():
    pages = listed((DOCS / "api" / "index.rst").read_text(), "fastsoftmax")
    public = set(fastsoftmax.__all__) - {"__version__"}
    assert public <= pages["fastsoftmax"], public - pages["fastsoftmax"]
    for module in (fastsoftmax.datasets, fastsoftmax.reference):
        names = set(module.__all__)
        assert names <= pages[module.__name__], names - pages[module.__name__]
    assert "__version__" in (DOCS / "api" / "index.rst").read_text()


def test_every_name_of_fastsoftmax_torch_is_in_its_page():
    # Read from the source: importing fastsoftmax.torch needs PyTorch.
    source = (ROOT / "src" / "fastsoftmax" / "torch" / "__init__.py").read_text()
    names = next(
        ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__all__"
    )
    page = listed((DOCS / "api" / "torch_entries.txt").read_text(), "fastsoftmax.torch")
    assert set(names) <= page["fastsoftmax.torch"], set(names) - page["fastsoftmax.torch"]


def test_the_listing_finds_entries():
    # The parser above must see what it is given (a test of the test).
    text = ".. currentmodule:: a\n\n.. autosummary::\n   :toctree: g/\n\n   f\n   g\n\nText\n"
    assert listed(text, "x") == {"a": {"f", "g"}}


def test_gallery_examples_are_scripts_with_a_title():
    examples = sorted((ROOT / "examples").glob("*.py"))
    assert len(examples) >= 6
    for path in examples:
        assert path.name.startswith("plot_"), path.name  # sphinx-gallery runs plot_*.py
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and re.match(r"[^\n]+\n=+\n", doc), f"{path.name} needs a titled docstring"
        assert "plt.show()" in path.read_text(), f"{path.name} draws no figure"


def _public_objects():
    yield from (getattr(fastsoftmax, n) for n in fastsoftmax.__all__ if n != "__version__")
    for module in (fastsoftmax.datasets, fastsoftmax.reference):
        yield from (getattr(module, n) for n in module.__all__)
    try:
        import fastsoftmax.torch as fst
    except ImportError:  # PyTorch is optional
        return
    yield from (getattr(fst, n) for n in fst.__all__)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_docstring_examples_run():
    # The Examples sections of the API reference, run as doctests.
    import doctest

    finder = doctest.DocTestFinder(recurse=True, exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    seen, ran = set(), 0
    for obj in _public_objects():
        for test in finder.find(obj, getattr(obj, "__name__", None), globs={}):
            if test.name in seen or not test.examples:
                continue
            seen.add(test.name)
            ran += len(test.examples)
            runner.run(test, clear_globs=True)
    assert ran >= 10
    assert runner.failures == 0, f"{runner.failures} docstring examples failed (output above)"

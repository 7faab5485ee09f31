"""Sphinx configuration of the fastsoftmax documentation.

Build from the repository's root: ``pip install ".[docs]"``, then
``sphinx-build -W --keep-going -b html docs docs/_build/html``. The gallery
(``examples/``) runs while the pages build and draws their figures.
"""

import importlib.util
import os
import warnings

import fastsoftmax

project = "fastsoftmax"
author = "the fastsoftmax developers"
copyright = "the fastsoftmax developers"
release = fastsoftmax.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",  # the pages written in Markdown
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3  # links to a page's sections: page.md#a-heading

exclude_patterns = ["_build", "**.ipynb_checkpoints", "api/torch_entries.txt"]
templates_path = ["_templates"]

# --------------------------------------------------------------- API pages

autosummary_generate = True
# The types are the numpydoc sections' (the annotations, checked by mypy in
# the tests, expand NumPy's ArrayLike into a union of a dozen lines).
autodoc_typehints = "none"
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# fastsoftmax.torch's page lists its names when PyTorch is installed (its
# modules import torch); without it the page says so instead of failing.
_here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_here, "api", "torch_entries.txt")) as f:
    _torch_entries = f.read()
if importlib.util.find_spec("torch") is not None:
    _torch_body = _torch_entries
else:
    _torch_body = (
        ".. note::\n\n   This page lists the operators and modules when PyTorch is installed "
        "where the documentation is built (``pip install torch``).\n"
    )
_torch_page = os.path.join(_here, "api", "torch.rst")
_torch_text = (
    "fastsoftmax.torch\n=================\n\n.. currentmodule:: fastsoftmax.torch\n\n" + _torch_body
)
if not os.path.exists(_torch_page) or open(_torch_page).read() != _torch_text:
    with open(_torch_page, "w") as f:  # written only when it changes: no rebuild otherwise
        f.write(_torch_text)

# ------------------------------------------------------------------ gallery

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "min_reported_time": 1,
    "capture_repr": (),  # printed output only, not the repr of a block's last value
}
# Agg without a display; the examples' own warnings would fail the -W build.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")

# --------------------------------------------------------------------- HTML

html_theme = "pydata_sphinx_theme"
html_title = f"fastsoftmax {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
html_show_sourcelink = False

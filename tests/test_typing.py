"""The public API is typed: mypy --strict accepts a user's script calling every
public function, and refuses a wrong argument type."""

import pathlib
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("mypy")

SCRIPT = pathlib.Path(__file__).parent / "typing" / "user_script.py"


def _mypy(tmp_path, source):
    path = tmp_path / "script.py"
    path.write_text(source)
    cache = tmp_path / ".mypy_cache"
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the installed package, not the source tree
    )


def test_a_script_calling_every_public_function_passes_mypy_strict(tmp_path):
    result = _mypy(tmp_path, SCRIPT.read_text())
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_argument_type_is_caught(tmp_path):
    source = 'import numpy as np\nimport fastsoftmax as fs\nfs.softmax(np.zeros(3), axis="one")\n'
    result = _mypy(tmp_path, source)
    assert result.returncode == 1
    assert 'Argument "axis" to "softmax" has incompatible type "str"' in result.stdout
    shutil.rmtree(tmp_path / ".mypy_cache", ignore_errors=True)

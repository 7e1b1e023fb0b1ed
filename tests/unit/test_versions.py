"""The import-time guard refuses Keras 3 and pyarrow >= 15 with the fix in the message."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def fake_distribution(site, name: str, version: str) -> None:
    # A dist-info earlier on sys.path is what importlib.metadata reports: the guard's view of the install.
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.mark.parametrize("name,version,expected", [
    ("keras", "3.3.3", "Keras 2"),
    ("pyarrow", "15.0.0", "pyarrow.filesystem"),
])
def test_import_fails_on_a_breaking_stack(tmp_path, name, version, expected):
    fake_distribution(tmp_path, name, version)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", "import prismrec"], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert expected in done.stderr and "Fix:" in done.stderr and version in done.stderr


def test_import_succeeds_on_the_pinned_stack():
    done = subprocess.run([sys.executable, "-c", "import prismrec"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

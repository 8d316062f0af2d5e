"""The README's Python quick start runs as written."""

import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def blocks():
    text = open(README).read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_has_a_python_quick_start():
    assert blocks()


@pytest.mark.parametrize("i", range(len(blocks())))
def test_readme_python_block_runs(i, capsys):
    exec(compile(blocks()[i], f"README.md python block {i}", "exec"), {"__name__": "__readme__"})
    assert "locked:" in capsys.readouterr().out


@pytest.mark.parametrize("i", range(len(blocks())))
def test_readme_python_block_leaves_nothing_behind(i, tmp_path, monkeypatch, capsys):
    """A new user runs the quick start as it is: it must not leave logs
    (a default segment is 64 MiB, preallocated) in the temporary directory."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    exec(compile(blocks()[i], f"README.md python block {i}", "exec"), {"__name__": "__readme__"})
    assert os.listdir(tmp_path) == []

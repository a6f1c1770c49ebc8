"""Packaging basics: the licence, one version number, ``python -m tinyrwkv``, the public error types,
and imports that point one way (library code never imports a figure script)."""
import ast
import pathlib
import subprocess
import sys

import pytest

import tinyrwkv

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "tinyrwkv"


def test_license_is_the_apache_2_text_pyproject_names():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text                   # the full text, not a stub
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()


def test_one_version_number():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tinyrwkv.__version__"}
    assert tinyrwkv.__version__.count(".") == 2


def test_error_types_are_exported():
    from tinyrwkv import errors
    for name in ("TinyRWKVError", "CheckpointError", "UnsafeCheckpointError", "StateFileError", "ParameterError"):
        assert name in tinyrwkv.__all__
        assert getattr(tinyrwkv, name) is getattr(errors, name)
    assert issubclass(tinyrwkv.UnsafeCheckpointError, tinyrwkv.CheckpointError)
    assert issubclass(tinyrwkv.ParameterError, (tinyrwkv.TinyRWKVError, ValueError))


def test_python_dash_m_tinyrwkv_is_the_command():
    proc = subprocess.run([sys.executable, "-m", "tinyrwkv", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: tinyrwkv") and "generate" in proc.stdout


def _imported_modules(path: pathlib.Path):
    """Absolute names of the tinyrwkv modules ``path`` imports (relative imports resolved)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module
            for alias in node.names:                  # "from . import recipes" imports a module
                yield f"{module}.{alias.name}"
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_library_code_never_imports_a_figure_script():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(("experiments/", "exercises/")) or rel in ("figures.py", "cli.py"):
            continue          # the figure scripts, their front ends, and the lessons' self-checks (top layer)
        offenders += [f"{rel} imports {m}" for m in _imported_modules(path)
                      if m.startswith("tinyrwkv.experiments") and not m.startswith("tinyrwkv.experiments._plotting")]
    assert not offenders, offenders

"""CI's lint step (`scripts/lint`, run by `scripts/test`): clean on this tree, failing on a finding."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / "scripts" / "lint")], cwd=root, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The code, the tests, the benchmarks and the config, copied where a finding can be planted."""
    for name in ("herald", "tests", "bench", "scripts"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_test_command_runs_the_lint_step_before_the_suite() -> None:
    script = (ROOT / "scripts" / "test").read_text().splitlines()
    steps = [line.strip() for line in script if line.strip() and not line.lstrip().startswith("#")]
    assert "./scripts/lint" in steps
    assert steps.index("./scripts/lint") < next(i for i, s in enumerate(steps) if "pytest" in s)
    assert "set -euo pipefail" in steps  # so a failing lint stops the run


def test_the_tree_is_clean() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_ruff_finding_fails_the_run(tree_copy: Path) -> None:
    (tree_copy / "herald" / "api" / "planted.py").write_text("import os\n")
    result = _lint(tree_copy)
    assert result.returncode != 0 and "F401" in result.stdout


def test_an_untyped_domain_function_fails_the_run(tree_copy: Path) -> None:
    (tree_copy / "herald" / "domain" / "planted.py").write_text("def f(x):\n    return x\n")
    result = _lint(tree_copy)
    assert result.returncode != 0 and "planted.py" in result.stdout

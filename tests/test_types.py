"""The package type-checks: mypy, configured in pyproject.toml, finds nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_errors_in_the_package() -> None:
    # Run from the project's root so mypy reads [tool.mypy] from its pyproject.toml.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "coflux"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr

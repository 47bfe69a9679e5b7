"""This build as a Worker Deployment version: the package version plus the git commit, when there is one."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_version() -> str:
    try:
        return version("vigil")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0"


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (12 hex digits, `-dirty` with uncommitted changes); None without git or a checkout."""
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12", "--exclude=*"], cwd=ROOT,
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def build_id(configured: str | None) -> str:
    """The configured build id, else `<package version>+<commit>` (version only without git), read once."""
    if configured:
        return configured
    commit = git_commit()
    return f"{package_version()}+{commit}" if commit else package_version()

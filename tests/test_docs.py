"""The operator docs cannot silently go stale: every setting is documented, and documented ones exist."""

from __future__ import annotations

import json

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from vigil.settings import SETTINGS_CLASSES, env_names
from vigilctl.config import ENV_NAMES as CLI_ENV_NAMES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIG_DOC = ROOT / "docs" / "configuration.md"
DOCS = [README, CONFIG_DOC, ROOT / "docs" / "runbook.md", ROOT / "docs" / "cli.md", ROOT / "docs" / "rca.md"]
ENV_NAME = re.compile(r"\bVIGIL_[A-Z0-9_]*[A-Z0-9]\b")
# A config-table row: | `VIGIL_NAME` | default | meaning |
TABLE_ROW = re.compile(r"^\|\s*`(VIGIL_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|", re.MULTILINE)


def defaults() -> dict[str, object]:
    """Env name -> the settings class default."""
    found: dict[str, object] = {}
    for cls in SETTINGS_CLASSES:
        prefix = cls.model_config.get("env_prefix", "")
        for name, info in cls.model_fields.items():
            found[f"{prefix}{name}".upper()] = info.default
    return found


def rendered(value: object) -> str | None:
    """How a literal default is written in the tables (None: not a literal, described in words)."""
    if value is None or value == "" or isinstance(value, SecretStr):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value)  # as the variable is written: JSON
    return str(value)


@pytest.mark.parametrize("doc", [README, CONFIG_DOC], ids=lambda p: p.name)
def test_every_setting_is_documented(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted(name for name in env_names() if f"`{name}`" not in text)
    assert not missing, f"{doc.name} does not document {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_variables_exist(doc: Path) -> None:
    """A VIGIL_* name in the docs is a real setting, a family of them (`VIGIL_SMTP_*`), or one the CLI reads."""
    known = env_names() | CLI_ENV_NAMES
    unknown = {
        name for name in ENV_NAME.findall(doc.read_text())
        if name not in known and not any(k.startswith(f"{name}_") for k in known)
    }
    assert not unknown, f"{doc.name} mentions {sorted(unknown)}, which no settings class reads"


@pytest.mark.parametrize("doc", [README, CONFIG_DOC], ids=lambda p: p.name)
def test_table_defaults_match_the_code(doc: Path) -> None:
    rows = dict(TABLE_ROW.findall(doc.read_text()))
    assert set(rows) == env_names(), f"{doc.name}: the configuration table should have one row per setting"
    wrong = {}
    for name, default in defaults().items():
        literal = rendered(default)
        cell = rows[name]
        if literal is None:
            assert not cell.startswith("`"), f"{doc.name}: {name} has no literal default, its cell says {cell}"
        elif cell != f"`{literal}`":
            wrong[name] = (cell, f"`{literal}`")
    assert not wrong, f"{doc.name}: stale defaults (documented, actual): {wrong}"

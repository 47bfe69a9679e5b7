"""Where the CLI finds Vigil: flags, then the environment, then the config file (click applies that order)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click

# The server's own name for "how people reach the API" (VIGIL_PUBLIC_URL), and the variable the email's curl
# snippet already uses for a person's key: one name per meaning across server, emails and CLI.
URL_ENV = "VIGIL_PUBLIC_URL"
KEY_ENV = "VIGIL_API_KEY"
CONFIG_ENV = "VIGIL_CONFIG"
ENV_NAMES = frozenset({URL_ENV, KEY_ENV, CONFIG_ENV})
DEFAULT_URL = "http://127.0.0.1:8000"
FILE_SETTINGS = ("url", "api_key")


class ConfigError(click.ClickException):
    """Vigil cannot be addressed as configured: a bad config file, URL or no key."""

    exit_code = 2


def default_path() -> Path:
    """The per-user config file (`~/.config/vigil/config.toml` on Linux, honouring XDG_CONFIG_HOME)."""
    return Path(click.get_app_dir("vigil")) / "config.toml"


def load(path: Path, *, explicit: bool) -> dict[str, str]:
    """The file's settings; {} when the default file does not exist (a named one must)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - set(FILE_SETTINGS))
    if unknown:
        known = ", ".join(FILE_SETTINGS)
        raise ConfigError(f"config file {path}: unknown setting {', '.join(unknown)} (known: {known})")
    not_text = sorted(k for k, v in data.items() if not isinstance(v, str))
    if not_text:
        raise ConfigError(f"config file {path}: {', '.join(not_text)} must be a string")
    return data

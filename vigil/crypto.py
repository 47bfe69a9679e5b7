"""Secrets at rest (webhook HMAC keys): Fernet, keyed from VIGIL_SECRETS_KEY or a key file in the data dir.

The column type (vigil.models.EncryptedText) has no access to settings, so the key is per process:
`configure()` is called where settings are known (API, worker, migrations); until then the environment's
settings are used.
"""

from __future__ import annotations

import threading

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from vigil.security import read_or_create_secret
from vigil.settings import CoreSettings

SECRETS_KEY_FILE = "secrets-key"
_lock = threading.Lock()
_fernet: MultiFernet | None = None


class SecretUnreadable(ValueError):
    """A stored secret that the configured key cannot decrypt (the key was changed or lost)."""


def load_keys(settings: CoreSettings) -> MultiFernet:
    """VIGIL_SECRETS_KEY (comma-separated Fernet keys, the first encrypts: rotation), else `<data_dir>/secrets-key`."""
    if settings.secrets_key is not None:
        raw = [k.strip() for k in settings.secrets_key.get_secret_value().split(",") if k.strip()]
    else:
        raw = [read_or_create_secret(settings.data_dir / SECRETS_KEY_FILE, lambda: Fernet.generate_key().decode())]
    return MultiFernet([Fernet(k.encode()) for k in raw])


def configure(settings: CoreSettings) -> None:
    global _fernet  # noqa: PLW0603 - one key set per process, see the module docstring
    with _lock:
        _fernet = load_keys(settings)


def _keys() -> MultiFernet:
    if _fernet is None:
        configure(CoreSettings())
    assert _fernet is not None
    return _fernet


def encrypt(plaintext: str) -> str:
    return _keys().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "a stored secret cannot be decrypted: VIGIL_SECRETS_KEY or <data_dir>/secrets-key changed "
            "(set the old key after the new one, comma-separated, to read it)"
        ) from None


def is_encrypted(value: str) -> bool:
    """True if `value` decrypts with the configured keys (the migration encrypts only what does not)."""
    try:
        _keys().decrypt(value.encode())
    except InvalidToken:
        return False
    return True

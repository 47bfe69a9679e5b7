"""What the ingest path reads on every request but rarely changes, kept in memory per process: integrations by
key (with their routing rules) and the silences. Each is kept with the token `cache_versions` held for its table
when it was read; database triggers set a new token on every write to the table (migration 0016), in whatever
process or host it is made.

- In the ingest transaction (the one that stores the alerts) the tokens are read first, so a silence or an
  integration change committed before the transaction began applies to it: a new silence holds the very next
  alert, a revoked or rotated key stores nothing, whichever API process the change went through.
- Outside it (the key check before the body is read, PagerDuty acknowledge/resolve, change events) a key found
  in memory is trusted for at most `max_age` seconds after the tokens were last read (VIGIL_API_KEY_CACHE_SECONDS,
  docs/configuration.md); any ingest transaction reads them again, so under load they are always fresh.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vigil.db import transaction
from vigil.ingest import holding
from vigil.ingest.store import IntegrationInfo
from vigil.matchers import Matcher
from vigil.models import CacheVersion, Integration, Silence
from vigil.security import hash_key

INTEGRATIONS, SILENCES = "integrations", "silences"
Tokens = dict[str, str]
# Never read. A missing token (None: the table was not written since the row went) is a token like any other:
# the next write to the table sets one.
_UNREAD = object()


# Built once and run as a Core statement: every ingest transaction reads the tokens.
_READ_TOKENS = select(CacheVersion.__table__.c.name, CacheVersion.__table__.c.token)


class KeyRevoked(Exception):
    """The integration key was deleted or rotated since it was checked: nothing is stored."""


class IngestCache:
    """One per process, shared by its threads."""

    def __init__(self, *, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._tokens: Tokens = {}
        self._read_at = float("-inf")  # monotonic time the tokens were last read
        self._keys: dict[str, IntegrationInfo] = {}  # key hash -> integration, valid for _keys_token
        self._keys_token: object = _UNREAD
        self._silences: list[tuple[int, datetime, datetime, list[Matcher]]] = []
        self._silences_token: object = _UNREAD

    # --- tokens -------------------------------------------------------------------------------------

    def read_tokens(self, session: Session) -> Tokens:
        """The current tokens (read before anything they guard); entries read under older ones are dropped."""
        tokens: Tokens = {name: token for name, token in session.connection().execute(_READ_TOKENS)}
        with self._lock:
            self._tokens, self._read_at = tokens, time.monotonic()
            if tokens.get(INTEGRATIONS) != self._keys_token:
                self._keys, self._keys_token = {}, tokens.get(INTEGRATIONS)
        return tokens

    def fast_silences(
        self, integration: IntegrationInfo
    ) -> tuple[str | None, list[tuple[int, datetime, datetime, list[Matcher]]]] | None:
        """For a store in one statement (store.store_repeats): the silences in memory and the token they were read
        under; the statement stores only while it and the integrations token `integration` was checked under are
        current. None: nothing to stand on (not a sender's key, or the silences never read)."""
        if integration.key_hash is None:
            return None
        with self._lock:
            if self._silences_token is _UNREAD:
                return None
            return self._silences_token, self._silences  # type: ignore[return-value]

    def confirm(self, integrations: str | None, silences: str | None) -> None:
        """The tokens as a one-statement store read them: when they are the ones in memory, the memory is as
        fresh as if read_tokens had just run (keys found in memory are trusted for max_age from now)."""
        with self._lock:
            if self._tokens.get(INTEGRATIONS) == integrations and self._tokens.get(SILENCES) == silences:
                self._read_at = time.monotonic()

    # --- integration keys ---------------------------------------------------------------------------

    def remembered(self, key: str, digest: str | None = None) -> IntegrationInfo | None:
        """The integration of `key` from memory while the tokens are fresh; None: ask `integration`."""
        digest = digest or hash_key(key)
        with self._lock:
            if time.monotonic() - self._read_at <= self.max_age:
                return self._keys.get(digest)
        return None

    def integration(self, sessions: sessionmaker[Session], key: str) -> IntegrationInfo | None:
        """The integration of `key` (None: no such key), from memory while the tokens are fresh."""
        digest = hash_key(key)
        if (hit := self.remembered(key, digest)) is not None:
            return hit

        def look_up(session: Session) -> IntegrationInfo | None:
            tokens = self.read_tokens(session)
            row = session.scalar(select(Integration).where(Integration.key_hash == digest))
            if row is None:
                return None
            info = dataclasses.replace(IntegrationInfo.of(row), key_hash=digest, token=tokens.get(INTEGRATIONS))
            with self._lock:
                if self._keys_token == tokens.get(INTEGRATIONS):
                    self._keys[digest] = info
            return info

        return transaction(sessions, look_up, write=False)

    def current(self, session: Session, tokens: Tokens, integration: IntegrationInfo) -> IntegrationInfo:
        """In the ingest transaction: `integration` as it stands now (rules included); KeyRevoked if its key is
        gone. Free when nothing changed since it was read."""
        if integration.key_hash is None or tokens.get(INTEGRATIONS) == integration.token:
            return integration  # not a sender's key (the worker's own deliveries), or nothing changed since
        row = session.scalar(select(Integration).where(Integration.key_hash == integration.key_hash))
        if row is None:
            with self._lock:
                self._keys.pop(integration.key_hash, None)
            raise KeyRevoked(integration.name)
        return dataclasses.replace(IntegrationInfo.of(row), key_hash=integration.key_hash, token=tokens.get(INTEGRATIONS))

    # --- silences -----------------------------------------------------------------------------------

    def silences(self, session: Session, tokens: Tokens, now: datetime) -> list[tuple[int, list[Matcher]]]:
        """The silences active at `now`, as holding.active_silences answers, read again only after a change."""
        token = tokens.get(SILENCES)
        with self._lock:
            kept = self._silences if token == self._silences_token else None
        if kept is None:
            # Every silence that has not ended: one that starts later becomes active without a change to the table.
            rows = session.execute(
                select(Silence.id, Silence.starts_at, Silence.ends_at, Silence.matchers).where(Silence.ends_at > now)
            )
            kept = [(sid, starts, ends, [Matcher.model_validate(m) for m in matchers])
                    for sid, starts, ends, matchers in rows]
            with self._lock:
                self._silences, self._silences_token = kept, token
        return [(sid, matchers) for sid, starts, ends, matchers in kept if starts <= now < ends]


def active_silences(cache: IngestCache, tokens: Tokens) -> holding.SilenceReader:
    """holding.sort_batch's silence reader, answered from the cache."""
    return lambda session, now: cache.silences(session, tokens, now)


__all__: Sequence[str] = ("IngestCache", "KeyRevoked", "active_silences")

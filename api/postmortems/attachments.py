"""Attachments of an incident: checked at the door (size, type, name), bytes in the artifact store, a row in the DB."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
import uuid
from urllib.parse import quote

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.errors import ApiError
from vigil.contracts import incident_ref
from vigil.models import PostmortemAttachment
from vigil.rca.artifacts import ArtifactStore, attachment_key

FILENAME_MAX = 255  # postmortem_attachments.filename
# The multipart envelope around the file (boundary, part headers, a long filename) on top of the file's own cap:
# the body limit cuts the upload off while it streams, the exact check follows on the parsed part.
MULTIPART_SLACK = 64 * 1024
# Quotes, backslashes, separators and controls make a name unsafe in a path or a Content-Disposition header.
UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')


def safe_filename(name: str | None) -> str:
    """The uploaded name without any directory, control or quoting character; `attachment` when nothing is left."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    base = "".join(c for c in base if unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Co", "Cn"})
    base = UNSAFE.sub("_", base).strip(" .")
    if len(base) > FILENAME_MAX:
        stem, dot, ext = base.rpartition(".")
        keep = f".{ext}" if dot and len(ext) <= 16 else ""
        base = (stem if keep else base)[: FILENAME_MAX - len(keep)] + keep
    return base or "attachment"


def content_type_of(declared: str | None, filename: str, allowed: frozenset[str]) -> str:
    """The part's declared type (or the name's, when the client sent none); 415 unless it is allowed."""
    kind = (declared or "").split(";", 1)[0].strip().lower()
    if kind in ("", "application/octet-stream"):
        kind = (mimetypes.guess_type(filename)[0] or kind or "application/octet-stream").lower()
    if kind not in allowed:
        raise ApiError(415, "unsupported_media_type", f"attachments of type {kind!r} are not accepted",
                       {"content_type": kind, "allowed": sorted(allowed)})
    return kind


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"an attachment may have at most {limit} bytes", {"limit_bytes": limit})


def save(
    *, session: Session, store: ArtifactStore, number: int, data: bytes, filename: str, content_type: str, actor: str
) -> PostmortemAttachment:
    """Bytes first, then the row: a row never points at nothing, and bytes without a row are removed again."""
    key = attachment_key(number, uuid.uuid4().hex)
    store.put(key, data, content_type)
    row = PostmortemAttachment(
        incident_number=number, filename=filename, content_type=content_type, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), artifact_key=key, uploaded_by=actor,
    )
    session.add(row)
    try:
        session.commit()
    except SQLAlchemyError:
        session.rollback()
        store.delete(key)
        raise
    return row


def get_or_404(session: Session, number: int, attachment_id: int) -> PostmortemAttachment:
    row = session.get(PostmortemAttachment, attachment_id)
    if row is None or row.incident_number != number:
        raise ApiError(404, "not_found", f"{incident_ref(number)} has no attachment {attachment_id}")
    return row


def remove(*, session: Session, store: ArtifactStore, row: PostmortemAttachment) -> None:
    """The row first: once it is gone nobody can reach the bytes, even if deleting them fails."""
    key = row.artifact_key
    session.delete(row)
    session.commit()
    store.delete(key)


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact one in RFC 5987 form (non-ASCII names survive)."""
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"

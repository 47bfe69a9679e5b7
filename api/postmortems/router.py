"""The RCA stage of an incident: its postmortem (JSON, Markdown, HTML, PDF), charts, attachments, and close."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from api.admin import invalid
from api.deps import Admin, ArtifactsDep, IncidentsDep, Principal, Responder, SessionDep, StateDep, Viewer
from api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from api.incidents import service as incidents_service
from api.incidents.schemas import IncidentDetail
from api.metrics import counted
from api.postmortems import attachments, service
from api.postmortems.schemas import (
    AttachmentRead,
    CloseRequest,
    Format,
    PostmortemRead,
    SectionsPatch,
    WaiveRequest,
)
from vigil.contracts import (
    Actor, ActorKind, CloseInput, Id, PostmortemDoneInput, PostmortemStatus, RefreshEvidenceInput, incident_ref,
)
from vigil.rca import postmortems
from vigil.rca.artifacts import ArtifactNotFound, InvalidArtifactKey, chart_key
from vigil.rca.render import to_html, to_markdown, to_pdf

router = APIRouter(prefix="/api/v1/incidents", tags=["postmortems"])
T = TypeVar("T")

# The upload path gets its own body cap in api.main (the attachment cap plus the multipart envelope).
ATTACHMENTS_PATH = re.compile(r"/api/v1/incidents/[^/]+/attachments")
CHART_NAME = r"^[a-z0-9][a-z0-9._-]{0,79}$"  # vigil.rca.artifacts.slug
BINARY = {"schema": {"type": "string", "format": "binary"}}
ERR_415 = {"model": ErrorResponse, "description": "the attachment's content type is not allowed"}
READ_ERRORS = {k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422)}
WRITE_ERRORS = {k: ERROR_RESPONSES[k] for k in (401, 403, 404, 409, 422, 503)}
# The HTML is a standalone page of escaped text and inlined charts: it needs no script, frame or fetch.
HTML_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _actor(user: Principal) -> Actor:
    return Actor(kind=ActorKind.user, name=user.email)


async def _db(state: Any, fn: Callable[..., T], **kwargs: Any) -> T:
    """Run a service function in its own session off the event loop (SQLite blocks)."""

    def run() -> T:
        with state.sessions() as session:
            return fn(session=session, **kwargs)

    return await asyncio.to_thread(run)


# --- the document ---------------------------------------------------------------------------------


@router.get(
    "/{ref}/postmortem", response_model=PostmortemRead,
    responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}},
                                 "application/pdf": BINARY}}} | READ_ERRORS,
)
def get_postmortem(
    ref: str, _user: Viewer, session: SessionDep, state: StateDep, store: ArtifactsDep, format: Format = "json"
) -> PostmortemRead | Response:
    """The postmortem: sections (who changed each, when), progress, figures, evidence, charts, attachments;
    `?format=md|html|pdf` renders it (the HTML and PDF carry the charts)."""
    number = incidents_service.number_of(ref)
    public_url = state.settings.core.public_url
    if format == "json":
        return service.read(session=session, public_url=public_url, number=number)
    service.postmortem_or_404(session, number)
    doc = postmortems.document_view(session, number=number, store=store)
    if format == "md":
        body = to_markdown(doc, chart_url=lambda chart: service.chart_url(public_url, number, chart))
        return Response(body, media_type="text/markdown; charset=utf-8")
    if format == "html":
        return Response(to_html(doc), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": HTML_CSP, "X-Content-Type-Options": "nosniff"})
    return Response(to_pdf(doc), media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{incident_ref(number)}-postmortem.pdf"',
    })


@router.patch("/{ref}/postmortem", response_model=PostmortemRead, responses=WRITE_ERRORS)
async def edit_postmortem(
    ref: str, body: SectionsPatch, user: Responder, state: StateDep, incidents: IncidentsDep
) -> PostmortemRead:
    """New bodies for sections by key (titles are fixed); each records who changed it and when. A draft only."""
    number = incidents_service.number_of(ref)
    progress = await _db(state, service.edit_sections, number=number, bodies=dict(body.sections),
                         actor=_actor(user).label())
    # Stored already; the workflow's "Postmortem: draft, 3/8 sections" follows, or the next edit tells it.
    await incidents.postmortem_edited(number, progress)
    return await _db(state, service.read, public_url=state.settings.core.public_url, number=number)


@router.post("/{ref}/postmortem/complete", response_model=PostmortemRead, responses=WRITE_ERRORS)
async def complete_postmortem(ref: str, user: Responder, state: StateDep, incidents: IncidentsDep) -> PostmortemRead:
    """Sign off a draft: 409 `postmortem_incomplete` naming the empty required sections (summary, root cause,
    action items). The incident then closes."""
    number = incidents_service.number_of(ref)
    await _db(state, service.check_completable, number=number)
    actor = _actor(user)
    await counted("complete_postmortem", incidents.complete_postmortem(number, PostmortemDoneInput(actor=actor)))
    await _db(state, service.mark_done, number=number, status=PostmortemStatus.complete, actor=actor.label())
    return await _db(state, service.read, public_url=state.settings.core.public_url, number=number)


@router.post(
    "/{ref}/postmortem/refresh", response_model=PostmortemRead, status_code=status.HTTP_202_ACCEPTED,
    responses=WRITE_ERRORS,
)
async def refresh_evidence(ref: str, user: Responder, state: StateDep, incidents: IncidentsDep) -> PostmortemRead:
    """Gather the evidence again (Prometheus was down at the resolve, or a query was added) and redraft; the
    incident's workflow does it beside the incident, so the new evidence appears in the document shortly."""
    number = incidents_service.number_of(ref)
    await _db(state, service.postmortem_or_404, number=number)
    await counted("refresh_evidence", incidents.refresh_evidence(number, RefreshEvidenceInput(actor=_actor(user))))
    return await _db(state, service.read, public_url=state.settings.core.public_url, number=number)


@router.post("/{ref}/postmortem/waive", response_model=PostmortemRead, responses=WRITE_ERRORS)
async def waive_postmortem(
    ref: str, body: WaiveRequest, user: Admin, state: StateDep, incidents: IncidentsDep
) -> PostmortemRead:
    """An admin closes the incident without a postmortem; the reason (required) goes in the timeline."""
    number = incidents_service.number_of(ref)
    await _db(state, service.postmortem_or_404, number=number)
    actor = _actor(user)
    inp = PostmortemDoneInput(actor=actor, reason=body.reason)
    await counted("waive_postmortem", incidents.waive_postmortem(number, inp))
    await _db(state, service.mark_done, number=number, status=PostmortemStatus.waived, actor=actor.label(),
              reason=body.reason)
    return await _db(state, service.read, public_url=state.settings.core.public_url, number=number)


@router.get(
    "/{ref}/postmortem/charts/{name}.png", response_class=Response,
    responses={200: {"content": {"image/png": BINARY}, "description": "the chart"}} | READ_ERRORS,
)
def get_chart(
    ref: str, name: Annotated[str, Path(pattern=CHART_NAME)], _user: Viewer, session: SessionDep, store: ArtifactsDep
) -> Response:
    """A chart of the evidence, as PNG (names are in the postmortem's `charts`)."""
    number = incidents_service.number_of(ref)
    service.incident_or_404(session, number)
    try:
        artifact = store.get(chart_key(number, name))
    except (ArtifactNotFound, InvalidArtifactKey):
        raise ApiError(404, "not_found", f"{incident_ref(number)} has no chart {name!r}") from None
    return Response(artifact.data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


# --- close ---------------------------------------------------------------------------------------


@router.post("/{ref}/close", response_model=IncidentDetail, responses=WRITE_ERRORS)
async def close(
    ref: str, user: Responder, state: StateDep, incidents: IncidentsDep, body: CloseRequest | None = None
) -> IncidentDetail:
    """Close a resolved incident: 409 `postmortem_required` (naming what is missing) while its required
    postmortem is a draft, 409 `invalid_transition` when it is not resolved."""
    number = incidents_service.number_of(ref)
    inp = CloseInput(actor=_actor(user), note=body.note if body else "")
    await counted("close", incidents.close(number, inp))
    # The live state, which the projection may not have caught up to (as after the other transitions).
    live = await incidents.state(number)
    return await _db(state, incidents_service.detail, settings=state.settings, number=number, live=live)


# --- attachments ---------------------------------------------------------------------------------

UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}},
    }}},
}


@router.post(
    "/{ref}/attachments", status_code=status.HTTP_201_CREATED, response_model=AttachmentRead,
    responses={**WRITE_ERRORS, 413: ERROR_RESPONSES[413], 415: ERR_415}, openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload_attachment(
    ref: str, request: Request, user: Responder, state: StateDep, store: ArtifactsDep
) -> AttachmentRead:
    """A file (multipart field `file`): logs, screenshots, PDFs, text. 413 over VIGIL_RCA_ATTACHMENTS_MAX_BYTES,
    415 for a type not in VIGIL_RCA_ATTACHMENTS_ALLOWED_TYPES."""
    number = incidents_service.number_of(ref)
    rca = state.settings.rca
    await _db(state, lambda session: service.incident_or_404(session, number))
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send the file as multipart/form-data, in the field `file`")
    # Read after the key was checked; Starlette spools the file to disk past 1 MiB, and the body cap for this
    # path (api.main) stops the upload while it streams, so an oversized file is never held in memory.
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise invalid([("body.file", "a file is required (multipart field `file`)")])
        if (upload.size or 0) > rca.attachments_max_bytes:
            raise attachments.too_large(rca.attachments_max_bytes)
        filename = attachments.safe_filename(upload.filename)
        kind = attachments.content_type_of(upload.content_type, filename, rca.allowed_types)
        data = await upload.read(rca.attachments_max_bytes + 1)
    if len(data) > rca.attachments_max_bytes:
        raise attachments.too_large(rca.attachments_max_bytes)
    if not data:
        raise invalid([("body.file", "the file is empty")])
    row = await _db(state, attachments.save, store=store, number=number, data=data, filename=filename,
                    content_type=kind, actor=_actor(user).label())
    return service.attachment_read(state.settings.core.public_url, row)


@router.get("/{ref}/attachments", response_model=list[AttachmentRead], responses=READ_ERRORS)
def list_attachments(ref: str, _user: Viewer, session: SessionDep, state: StateDep) -> list[AttachmentRead]:
    number = incidents_service.number_of(ref)
    service.incident_or_404(session, number)
    return [service.attachment_read(state.settings.core.public_url, a) for a in service.attachments(session, number)]


@router.get(
    "/{ref}/attachments/{attachment_id:int}", response_class=Response,
    responses={200: {"content": {"*/*": BINARY}, "description": "the file, as uploaded"}} | READ_ERRORS,
)
def download_attachment(
    ref: str, attachment_id: Id, _user: Viewer, session: SessionDep, store: ArtifactsDep
) -> Response:
    """The file with its stored content type, always as a download (never rendered by the browser)."""
    number = incidents_service.number_of(ref)
    row = attachments.get_or_404(session, number, attachment_id)
    try:
        artifact = store.get(row.artifact_key)
    except ArtifactNotFound:
        raise ApiError(404, "not_found", f"the file of attachment {attachment_id} is missing from the store") from None
    return Response(artifact.data, media_type=row.content_type, headers={
        "Content-Disposition": attachments.content_disposition(row.filename),
        "X-Content-Type-Options": "nosniff",
    })


@router.delete(
    "/{ref}/attachments/{attachment_id:int}", status_code=status.HTTP_204_NO_CONTENT,
    responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422)},
)
def delete_attachment(ref: str, attachment_id: Id, _user: Responder, session: SessionDep, store: ArtifactsDep) -> None:
    number = incidents_service.number_of(ref)
    attachments.remove(session=session, store=store, row=attachments.get_or_404(session, number, attachment_id))

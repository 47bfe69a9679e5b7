"""Request and response bodies of the postmortem, attachment and evidence-query endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from api.admin import Patch, not_null
from vigil.contracts import BodyId, PostmortemStatus
from vigil.ingest.fit import clean
from vigil.rca.document import SECTION_KEYS

SECTION_MAX_CHARS = 65_536
PROMQL_MAX_CHARS = 4_096


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


# What UTF-8 or PostgreSQL cannot store (NUL, lone surrogates) becomes U+FFFD instead of a 500.
SectionBody = Annotated[str, Field(max_length=SECTION_MAX_CHARS), AfterValidator(clean)]
Reason = Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(_not_blank), AfterValidator(clean)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank), AfterValidator(clean)]
PromQL = Annotated[str, Field(min_length=1, max_length=PROMQL_MAX_CHARS), AfterValidator(_not_blank), AfterValidator(clean)]
SectionKey = Literal[SECTION_KEYS]  # type: ignore[valid-type] - the template's keys, one source
Format = Literal["json", "md", "html", "pdf"]


# --- the document -------------------------------------------------------------------------------


class SectionRead(BaseModel):
    key: str
    title: str
    body: str
    position: int
    filled: bool = Field(description="Written: not empty and not the template's hint.")
    edited: bool = Field(description="Changed by a person (a refreshed draft never overwrites it).")
    updated_by: str = Field(description="Who changed it last: `user:<email>`, or `system:vigil` for the draft.")
    updated_at: datetime


class Progress(BaseModel):
    sections_total: int
    sections_filled: int


class FiguresRead(BaseModel):
    time_to_acknowledge_seconds: float | None
    time_to_resolve_seconds: float | None
    pages_sent: int
    people_paged: int
    highest_step: int | None
    highest_step_name: str | None
    reopen_count: int


class SeriesRead(BaseModel):
    """One metric series gathered as evidence; `error` says why it is a gap."""

    name: str
    promql: str
    source: str
    step_seconds: int
    samples: int
    threshold: float | None
    error: str | None
    chart_url: str | None
    gathered_at: datetime


class ChartRead(BaseModel):
    name: str
    slug: str
    url: str


class AttachmentRead(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime
    url: str


class Links(BaseModel):
    markdown: str
    html: str
    pdf: str


class PostmortemRead(BaseModel):
    id: str = Field(description="The incident, `INC-<n>`.")
    number: int
    title: str
    status: PostmortemStatus
    progress: Progress
    missing: list[str] = Field(description="Required sections still empty: `complete` refuses until none are.")
    sections: list[SectionRead]
    figures: FiguresRead
    evidence: list[SeriesRead]
    charts: list[ChartRead]
    attachments: list[AttachmentRead]
    links: Links
    created_at: datetime
    updated_at: datetime
    completed_by: str | None
    completed_at: datetime | None
    waived_by: str | None
    waived_at: datetime | None
    waived_reason: str | None


class SectionsPatch(BaseModel):
    """New bodies by section key; titles are fixed. Each changed section records who and when."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"sections": {"root_cause": "A bad deploy."}}]})

    sections: dict[SectionKey, SectionBody] = Field(min_length=1)


class WaiveRequest(BaseModel):
    reason: Reason = Field(description="Why no postmortem is needed; required, goes in the timeline.")


class CloseRequest(BaseModel):
    note: str = Field(default="", max_length=4000)

    @field_validator("note")
    @classmethod
    def _storable(cls, value: str) -> str:
        return clean(value)


# --- evidence queries ---------------------------------------------------------------------------


class EvidenceQueryCreate(BaseModel):
    """A PromQL query gathered for every incident of `service`, or of alerts from `integration_id` (one of both)."""

    name: Name
    promql: PromQL
    service: Name | None = None
    integration_id: BodyId | None = None
    threshold: float | None = Field(default=None, allow_inf_nan=False, description="Drawn on the chart.")

    @model_validator(mode="after")
    def _one_scope(self) -> EvidenceQueryCreate:
        if (self.service is None) == (self.integration_id is None):
            raise ValueError("give exactly one of service and integration_id")
        return self


class EvidenceQueryUpdate(Patch):
    name: Name | None = None
    promql: PromQL | None = None
    threshold: float | None = Field(default=None, allow_inf_nan=False)

    _not_null = field_validator("name", "promql")(not_null)


class EvidenceQueryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    promql: str
    service: str | None
    integration_id: int | None
    threshold: float | None
    created_at: datetime

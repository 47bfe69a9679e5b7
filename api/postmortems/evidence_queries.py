"""/api/v1/evidence-queries (admin): the PromQL gathered as evidence per service or per integration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from api.admin import ADMIN_ERRORS, get_or_404, invalid, unknown_ids
from api.deps import Admin, SessionDep
from api.postmortems.schemas import EvidenceQueryCreate, EvidenceQueryRead, EvidenceQueryUpdate
from vigil.contracts import Id
from vigil.models import EvidenceQuery, Integration

router = APIRouter(prefix="/api/v1/evidence-queries", tags=["postmortems"])
QUERY = "/{query_id:int}"


@router.post("", status_code=status.HTTP_201_CREATED, response_model=EvidenceQueryRead, responses=ADMIN_ERRORS)
def create_query(body: EvidenceQueryCreate, _user: Admin, session: SessionDep) -> EvidenceQuery:
    """Run for every incident of `service`, or of alerts from `integration_id`, when its evidence is gathered."""
    if body.integration_id is not None and (
        problems := unknown_ids(session, Integration, [body.integration_id], "body.integration_id", "integration")
    ):
        raise invalid([(field.removesuffix(".0"), message) for field, message in problems])
    row = EvidenceQuery(**body.model_dump())
    session.add(row)
    session.commit()
    return row


@router.get("", response_model=list[EvidenceQueryRead], responses=ADMIN_ERRORS)
def list_queries(
    _user: Admin, session: SessionDep,
    service: Annotated[str | None, Query(max_length=200)] = None,
) -> list[EvidenceQuery]:
    stmt = select(EvidenceQuery).order_by(EvidenceQuery.id)
    if service is not None:
        stmt = stmt.where(EvidenceQuery.service == service)
    return list(session.scalars(stmt))


@router.get(QUERY, response_model=EvidenceQueryRead, responses=ADMIN_ERRORS)
def get_query(query_id: Id, _user: Admin, session: SessionDep) -> EvidenceQuery:
    return get_or_404(session, EvidenceQuery, query_id, "evidence query")


@router.patch(QUERY, response_model=EvidenceQueryRead, responses=ADMIN_ERRORS)
def update_query(query_id: Id, body: EvidenceQueryUpdate, _user: Admin, session: SessionDep) -> EvidenceQuery:
    """Name, PromQL or threshold; incidents whose evidence was gathered keep what was gathered."""
    row = get_or_404(session, EvidenceQuery, query_id, "evidence query")
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(row, name, value)
    session.commit()
    return row


@router.delete(QUERY, status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def delete_query(query_id: Id, _user: Admin, session: SessionDep) -> None:
    session.delete(get_or_404(session, EvidenceQuery, query_id, "evidence query"))
    session.commit()

"""The OpenAPI schema, completed with the answers any route of a kind can give, so clients (and schemathesis)
are told every status they may get: a body that is not JSON, a body over the cap, a key refused or rate
limited, a database that is busy."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
DESCRIPTIONS = {
    400: "the body is not JSON (or not UTF-8)",
    401: "missing or invalid key",
    403: "the key's role does not allow this",
    404: "no such resource",
    413: "the body is over VIGIL_API_MAX_BODY_BYTES",
    422: "a parameter or the body is invalid (details name each field)",
    429: "too many failed authentications from this address (Retry-After)",
    503: "the database is busy or unreachable, or Temporal is (Retry-After)",
}


def document_common_answers(app: FastAPI) -> None:
    """Wrap app.openapi so the generated schema lists the common error answers of every operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _complete(build())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _codes(op: dict[str, Any]) -> set[int]:
    params = op.get("parameters", [])
    codes: set[int] = set()
    if "requestBody" in op:
        # PagerDuty's endpoints answer an invalid body with PagerDuty's 400 (api/ingest/pagerduty.py), never a 422.
        codes |= {400, 413, op.get("x-validation-status", 422), 503}
    if params:
        codes.add(422)
    if any(p["in"] == "path" for p in params):
        codes.add(404)
    if op.get("security"):
        # Integration keys (ingestion) are not rate limited and have no roles.
        codes |= {401, 503} if "ingestion" in op.get("tags", []) else {401, 403, 429, 503}
    return codes


def _complete(schema: dict[str, Any]) -> None:
    assert "ErrorResponse" in schema["components"]["schemas"]
    for ops in schema["paths"].values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            # FastAPI documents its own 422 body (HTTPValidationError); ours is the one error shape.
            if "HTTPValidationError" in str(responses.get("422", {})):
                responses["422"] = {"description": DESCRIPTIONS[422], "content": ERROR_CONTENT}
            if op.get("x-validation-status", 422) != 422:
                responses.pop("422", None)
            for code in sorted(_codes(op)):
                responses.setdefault(str(code), {"description": DESCRIPTIONS[code], "content": ERROR_CONTENT})

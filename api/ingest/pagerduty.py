"""PagerDuty's own error answers on its two endpoints: PagerDuty's clients print PagerDuty's body and call a 422
an "unknown error", so a refused event is a 400 `{"status", "message", "errors"}` here, not the one error shape."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import ApiError
from api.ingest.schemas import PagerDutyError

INVALID_EVENT = "invalid event"
EVENT_INVALID = "Event object is invalid"
# What PagerDuty answers for a routing key it does not know (a 400, not a 401): its clients show this text.
INVALID_ROUTING_KEY = "Invalid routing key"

RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": PagerDutyError, "description": "PagerDuty's body: the event is invalid (`errors` names each "
          "problem), the routing key is unknown (`Invalid routing key`), or the body is not JSON"},
}
# api/openapi.py lists no 422 for an operation marked so: its body errors are the 400 above.
OPENAPI_EXTRA = {"x-validation-status": 400}


def pagerduty_error(errors: list[str], *, status: str = INVALID_EVENT, message: str = EVENT_INVALID) -> JSONResponse:
    return JSONResponse(PagerDutyError(status=status, message=message, errors=errors).model_dump(), status_code=400)


def _describe(exc: RequestValidationError) -> list[str]:
    """Each problem as PagerDuty words it: one string, the field first."""
    described = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"][1:])  # loc[0] is "body"
        message = str(err["msg"]).removeprefix("Value error, ")
        described.append(f"{field}: {message}" if field else message)
    return described


class PagerDutyRoute(APIRoute):
    """A route answering its refusals as PagerDuty does; other errors (413, 503) keep Vigil's one shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer_as_pagerduty(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if any(err["type"] == "json_invalid" for err in exc.errors()):
                    # No routing key can be read from it; saying so describes nothing of the schema.
                    return pagerduty_error(["JSON parse error"], status="Unrecognized object",
                                           message="Event object format is unrecognized")
                # The routing key dependency ran before the body was validated: the key is known.
                return pagerduty_error(_describe(exc))
            except ApiError as err:
                if err.status != 401:
                    raise
                return pagerduty_error([INVALID_ROUTING_KEY])
            except StarletteHTTPException as err:
                if err.status_code != 400:  # FastAPI's "error parsing the body": not UTF-8
                    raise
                return pagerduty_error(["JSON parse error"], status="Unrecognized object",
                                       message="Event object format is unrecognized")

        return answer_as_pagerduty

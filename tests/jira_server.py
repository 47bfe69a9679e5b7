"""A Jira-compatible REST v2 server on 127.0.0.1 that the real `jira` client (3.10) runs against unmodified.

    jira = JiraServer(deployment="Cloud").start()    # the `jira_server` fixture: fresh per test
    client = JIRA(server=jira.base_url, basic_auth=jira.basic_auth, max_retries=0, timeout=5)
    jira.fail_next(2, 429, retry_after=3)            # path_prefix=/method= narrow it; 500, 400, 403, 503 ...
    jira.latency = 0.5                               # every answer this much later (the change is made first)
    jira.down(); jira.up()                           # connections refused in between, same port
    jira.crash_after_create()                        # the next create is stored, its answer never sent
    jira.issues["OPS-1"], jira.comments("OPS-1"), jira.transitions_applied("OPS-1"), jira.requests
    payload = jira.human_transition("OPS-1", "Done") # a person did it in Jira: the webhook body Jira sends
    await post_webhook(vigil_url, payload, secret, client=api)   # signed `X-Hub-Signature: sha256=<hex>`

Attachments (multipart POST `issue/{key}/attachments`, only with `X-Atlassian-Token: no-check`, listed in
`fields.attachment`; `jira.attachments(key)` has their bytes), issue links (POST `issueLink` with Jira's default
link types from GET `issueLinkType`; shown in both issues' `fields.issuelinks`; the same link twice is stored
once, as Jira does; `jira.links`) and `duedate` (`YYYY-MM-DD`) follow REST v2 on Cloud and Data Center alike.

JQL: clauses joined by AND, each `=` or `!=` on `labels`, `project`, `key`/`issuekey`, `status` or
`issue.property[<key>].<path>`, values bare or quoted, then optionally `ORDER BY created|key [ASC|DESC]`.
Anything else is a 400, and so is an unknown project, as in Jira. Property clauses match only after
`index_property(...)`: Jira indexes an entity property for JQL only when an app (Connect/Forge module, DC
plugin) declares it, which a REST client with an API token cannot do.

What the client does (jira 3.10, read from its source):
- `JIRA(...)` sends GET serverInfo (unless `get_server_info=False`). Its `deploymentType` decides two things:
  "Cloud" makes `search_issues` use GET `search/jql` (token paging, no `total`) and `assign_issue` send
  `{accountId}`; anything else means GET `search` and `{name}`. Cloud answers 410 on `search`, as Jira Cloud.
- `create_issue` POSTs, then (`prefetch=True`, the default) GETs the issue: if that GET fails, it raises
  although the issue exists. `transition_issue` by name GETs transitions first. `assign_issue(key, who)`
  searches users first (`query=` on Cloud: email or display name, not account id) and takes the first hit.
  `search_issues` GETs `field` once. `add_issue_property` is a raw PUT returning the Response.
- Every request goes through `ResilientSession`. It retries 429 and 503 answers and `ConnectionError`
  (refused, reset, answer dropped, ConnectTimeout; not ReadTimeout, not 500) for every method, POST too: a
  create whose answer was lost is sent again and makes a second issue. It waits with a blocking `time.sleep`:
  2 x Retry-After, else 10 x 2^n s, capped by `_session.max_retry_delay` (60), times U(0.5, 1), up to
  `max_retries` (3) times. `timeout` defaults to None: a hung Jira hangs the call.
- So Vigil builds `JIRA(server, basic_auth=(email, token) or token_auth=pat, max_retries=0,
  timeout=(connect, read))` and lets Temporal retry. Errors then surface at once: `JIRAError` (`.status_code`,
  `.response.headers["Retry-After"]`) for HTTP errors, `requests.exceptions.ConnectionError` / `Timeout`
  for the rest.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import hashlib
import hmac
import itertools
import json
import mimetypes
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from pydantic import SecretStr

from vigil.settings import JiraSettings

# Jira's simplified workflow (the default of new projects): every status can move to every other, and each
# transition is named after the status it leads to. docs/jira.md documents Vigil's defaults against it.
DEFAULT_WORKFLOW: dict[str, dict[str, str]] = {
    "To Do": {"In Progress": "In Progress", "Done": "Done"},
    "In Progress": {"To Do": "To Do", "Done": "Done"},
    "Done": {"To Do": "To Do", "In Progress": "In Progress"},
}
# Jira's classic default workflow ("jira"), for tests of other mappings.
CLASSIC_WORKFLOW: dict[str, dict[str, str]] = {
    "Open": {"Start Progress": "In Progress", "Resolve Issue": "Resolved", "Close Issue": "Closed"},
    "In Progress": {"Stop Progress": "Open", "Resolve Issue": "Resolved", "Close Issue": "Closed"},
    "Resolved": {"Reopen Issue": "Reopened", "Close Issue": "Closed"},
    "Reopened": {"Start Progress": "In Progress", "Resolve Issue": "Resolved", "Close Issue": "Closed"},
    "Closed": {"Reopen Issue": "Reopened"},
}
CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
ISSUE_TYPES = ("Incident", "Task", "Bug")
EDITABLE = {"summary", "description", "priority", "labels", "assignee", "duedate"}
CREATABLE = EDITABLE | {"project", "issuetype", "reporter"}
NOT_AUTHENTICATED = "You are not authenticated. Authentication required to perform this operation."
NO_ISSUE = "Issue does not exist or you do not have permission to see it."
MAX_PROPERTY_BYTES = 32768
# Jira's default issue link types: name -> (inward, outward) description.
LINK_TYPES = {
    "Blocks": ("is blocked by", "blocks"), "Cloners": ("is cloned by", "clones"),
    "Duplicate": ("is duplicated by", "duplicates"), "Relates": ("relates to", "relates to"),
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_Answer = tuple[int, dict[str, str], bytes]  # status (0: drop the connection), headers, body


@dataclass(frozen=True)
class JiraUser:
    """A Jira account: Cloud knows it by `account_id`, Server/DC by `name` (username)."""

    account_id: str
    email: str
    display_name: str
    name: str


@dataclass(frozen=True)
class JiraRequest:
    """One request as it arrived; `status` 0 means the answer was dropped."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    json: Any
    status: int


@dataclass
class _Issue:
    id: str
    key: str
    project: str
    issuetype: str
    summary: str
    description: str | None
    priority: str
    labels: list[str]
    assignee: str | None  # account id
    reporter: str
    status: str
    created: str
    created_at: float  # time.monotonic(), for index_delay
    updated: str = ""
    resolution: str | None = None
    duedate: str | None = None
    comments: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)  # with the bytes under "data"
    properties: dict[str, Any] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Rule:
    method: str | None
    path_prefix: str | None
    path: str | None = None  # exact
    status: int = 0
    retry_after: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
            and (self.path is None or path == self.path)
        )


class ApiError(Exception):
    """Answered in Jira's error shape: `{"errorMessages": [...], "errors": {field: message}}`."""

    def __init__(self, status: int, *messages: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(status, messages, errors)
        self.status, self.body = status, {"errorMessages": list(messages), "errors": errors or {}}


def now_jira() -> str:
    """Jira's timestamp format: 2024-05-01T12:00:00.000+0000."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature` Jira sends for a webhook registered with a secret."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def webhook_request(payload: dict[str, Any], secret: bytes | None) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a delivery; the identifier is stable per payload, as across retries."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Atlassian-Webhook-Identifier": str(int(hashlib.sha256(body).hexdigest()[:12], 16)),
        "X-Atlassian-Webhook-Flow": "Primary",
    }
    if secret is not None:
        headers["X-Hub-Signature"] = sign(secret, body)
    return body, headers


async def post_webhook(
    url: str, payload: dict[str, Any], secret: bytes | None, client: httpx.AsyncClient | None = None,
) -> httpx.Response:
    """POST a delivery as Jira does; pass `client` to go through the ASGI test client instead of TCP."""
    body, headers = webhook_request(payload, secret)
    if client is not None:
        return await client.post(url, content=body, headers=headers)
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, content=body, headers=headers)


# --- JQL ----------------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"""\s*(?P<field>issue\.property\[(?P<pkey>[^\]]+)\]\.(?P<ppath>[\w.]+)|[A-Za-z]+)\s*(?P<op>!=|=)\s*
        (?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'|(?P<bare>[\w.\-:@]+))\s*""",
    re.VERBOSE,
)
_ORDER = re.compile(r"\s+ORDER\s+BY\s+(?P<field>created|key)(?:\s+(?P<dir>ASC|DESC))?\s*$", re.IGNORECASE)
_FIELDS = {"labels": "labels", "project": "project", "key": "key", "issuekey": "key", "status": "status"}


def parse_jql(jql: str) -> tuple[list[tuple[str, str, str]], bool]:
    """Clauses (field, op, value) and whether to sort newest first; ApiError(400) for the unsupported."""
    order = _ORDER.search(jql)
    newest_first = bool(order and (order["dir"] or "ASC").upper() == "DESC")
    text = jql[: order.start()] if order else jql
    clauses = []
    for part in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise ApiError(400, f"Error in the JQL Query: jira_server cannot parse '{part}'.")
        value = next(v for v in (m["dq"], m["sq"], m["bare"]) if v is not None)
        if m["pkey"] is not None:
            name = f"property:{m['pkey']}:{m['ppath']}"
        elif m["field"].lower() in _FIELDS:
            name = _FIELDS[m["field"].lower()]
        else:
            raise ApiError(
                400, f"Field '{m['field']}' does not exist or you do not have permission to view it."
            )
        clauses.append((name, m["op"], re.sub(r"\\(.)", r"\1", value)))
    return clauses, newest_first


def _valid_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%d")  # noqa: DTZ007 - a calendar date, no time
    except ValueError:
        return False
    return True


def _same(stored: Any, literal: str) -> bool:
    if isinstance(stored, bool):
        return str(stored).lower() == literal.lower()
    if not isinstance(stored, int | float):
        return str(stored) == literal
    try:
        return float(literal) == stored
    except ValueError:
        return False


# --- the server ---------------------------------------------------------------------------------


class Actor:
    """A Jira user changing issues in Jira itself; each change returns the webhook body Jira would POST."""

    def __init__(self, server: JiraServer, user: JiraUser) -> None:
        self.server, self.user = server, user

    def transition(self, key: str, status_name: str, comment: str | None = None) -> dict[str, Any]:
        """Move `key` to `status_name` through the workflow: the `jira:issue_updated` body."""
        return self.server._transition_to(self.user, key, status_name, comment)[0]

    def comment(self, key: str, body: str) -> dict[str, Any]:
        """The `comment_created` body."""
        return self.server._comment(self.user, key, body)[0]

    def assign(self, key: str, account_id: str | None) -> dict[str, Any]:
        """The `jira:issue_updated` body with an assignee changelog item (None: unassign)."""
        return self.server._assign(self.user, key, account_id)[0]


class JiraServer:
    """Jira Cloud (`deployment="Cloud"`) or Server/DC (`"Server"`) REST v2 on a free 127.0.0.1 port."""

    def __init__(
        self, *, deployment: str = "Cloud", email: str = "vigil@example.com",
        api_token: str = "jira-api-token", pat: str = "jira-pat", projects: dict[str, str] | None = None,
    ) -> None:
        self.deployment = deployment
        self.cloud = deployment == "Cloud"
        self.latency = 0.0
        self.index_delay = 0.0  # seconds a new issue stays invisible to search (Jira's index lags)
        self.workflow: dict[str, dict[str, str]] = {k: dict(v) for k, v in DEFAULT_WORKFLOW.items()}
        self.status_categories = {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}
        self.projects = dict(projects or {"OPS": "Operations"})
        self.issue_types = list(ISSUE_TYPES)
        self.priorities = list(PRIORITIES)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._users: dict[str, JiraUser] = {}
        self._basic: dict[tuple[str, str], str] = {}
        self._bearer: dict[str, str] = {}
        self._issues: dict[str, _Issue] = {}
        self._counters: dict[str, itertools.count[int]] = {}
        self._ids = itertools.count(10000)
        self._comment_ids = itertools.count(10100)
        self._attachment_ids = itertools.count(10300)
        self._link_ids = itertools.count(10400)
        self._links: list[dict[str, str]] = []  # {id, type, inward, outward} (issue keys)
        self._changelog_ids = itertools.count(10200)
        self._requests: list[JiraRequest] = []
        self._webhooks: list[dict[str, Any]] = []
        self._failures: list[_Rule] = []
        self._drops: list[_Rule] = []
        self._invalid_fields: dict[str, str] = {}
        self._indexed: set[tuple[str, str]] = set()
        self.user = self.add_user(JiraUser("557058:vigil-integration", email, "Vigil Integration", "vigil"),
                                  api_token=api_token, pat=pat)
        self.api_token, self.pat = api_token, pat
        self.human = self.as_user("5b10a2844c20165700ede21g", "hannah@example.com", "Hannah Human")
        self.integration = Actor(self, self.user)
        self._httpd: _Httpd | None = None
        self.port = 0
        self._bind()
        self.base_url = f"http://127.0.0.1:{self.port}"

    # --- lifecycle --------------------------------------------------------------------------

    def _bind(self) -> None:
        self._httpd = _Httpd(("127.0.0.1", self.port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]

    def _serve(self) -> None:
        assert self._httpd is not None
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="jira-server",
                         daemon=True).start()

    def start(self) -> JiraServer:
        self._serve()
        return self

    def down(self) -> None:
        """Close the listening socket: connections are refused until `up()`."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def up(self) -> None:
        """Listen again on the same port, with the same state."""
        if self._httpd is None:
            self._bind()
            self._serve()

    def stop(self) -> None:
        self._stopping.set()
        self.down()

    def __enter__(self) -> JiraServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- accounts ---------------------------------------------------------------------------

    @property
    def basic_auth(self) -> tuple[str, str]:
        """What `JIRA(basic_auth=...)` takes: email + API token on Cloud, username + password on Server."""
        return (self.user.email if self.cloud else self.user.name), self.api_token

    def add_user(self, user: JiraUser, *, api_token: str | None = None, pat: str | None = None) -> JiraUser:
        """Register `user`: `api_token` lets it log in with Basic auth, `pat` (Server only) with Bearer."""
        with self._lock:
            self._users[user.account_id] = user
            if api_token is not None:
                self._basic[(user.email if self.cloud else user.name, api_token)] = user.account_id
            if pat is not None:
                self._bearer[pat] = user.account_id
        return user

    def as_user(self, account_id: str, email: str, display_name: str, *, name: str | None = None) -> Actor:
        """A (new or known) Jira user who changes issues in Jira, not through the API."""
        with self._lock:
            known = self._users.get(account_id)
        user = known or self.add_user(JiraUser(account_id, email, display_name, name or email.split("@")[0]))
        return Actor(self, user)

    def human_transition(self, key: str, status_name: str, comment: str | None = None, *,
                         user: Actor | None = None) -> dict[str, Any]:
        """A person moves `key` to `status_name`; `self.webhooks` also gets the `comment_created`, if any."""
        return (user or self.human).transition(key, status_name, comment)

    def human_comment(self, key: str, body: str, *, user: Actor | None = None) -> dict[str, Any]:
        return (user or self.human).comment(key, body)

    def human_assign(self, key: str, account_id: str | None, *, user: Actor | None = None) -> dict[str, Any]:
        return (user or self.human).assign(key, account_id)

    # --- scripting --------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, *, retry_after: int | str | None = None,
                  path_prefix: str | None = None, method: str | None = None) -> None:
        """Answer the next `n` matching requests with `status` (Jira's error shape) and change nothing."""
        after = None if retry_after is None else str(retry_after)
        rule = _Rule(method, path_prefix, status=status, retry_after=after)
        with self._lock:
            self._failures.extend([rule] * n)

    def drop_next(self, n: int = 1, *, path_prefix: str | None = None, method: str | None = None,
                  path: str | None = None) -> None:
        """Carry out the next `n` matching successful requests, then close the connection unanswered."""
        with self._lock:
            self._drops.extend([_Rule(method, path_prefix, path)] * n)

    def crash_after_create(self) -> None:
        """The next issue create is stored, and the caller never hears back."""
        self.drop_next(method="POST", path="/rest/api/2/issue")

    def reject_field(self, name: str, message: str | None = None) -> None:
        """Creates and edits that set field `name` get 400 `errors[name] = message`."""
        with self._lock:
            self._invalid_fields[name] = message or f"Field '{name}' is invalid."

    def index_property(self, key: str, path: str) -> None:
        """Make `issue.property[key].path` searchable, as an app's entity-property module would."""
        with self._lock:
            self._indexed.add((key, path))

    def cloud_settings(self) -> JiraSettings:
        """Vigil's Jira settings for this server as Jira Cloud (email + API token), project OPS."""
        return JiraSettings(
            url=self.base_url, email=self.user.email, api_token=SecretStr(self.api_token), project_key="OPS",
            timeout_seconds=5,
        )

    # --- records ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[JiraRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def issues(self) -> dict[str, dict[str, Any]]:
        """Every issue by key, as GET issue renders it."""
        with self._lock:
            return {key: self._issue_json(issue) for key, issue in self._issues.items()}

    @property
    def created_count(self) -> int:
        with self._lock:
            return len(self._issues)

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook body Jira would have sent, API changes (echoes of Vigil's own) included."""
        with self._lock:
            return list(self._webhooks)

    def comments(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            return [self._comment_json(self._issues[key], c) for c in self._issues[key].comments]

    def transitions_applied(self, key: str) -> list[dict[str, Any]]:
        """`{id, name, from, to, by}` per transition, `by` the account id."""
        with self._lock:
            return list(self._issues[key].transitions)

    def attachments(self, key: str) -> list[dict[str, Any]]:
        """`{id, filename, size, mimeType, author, data}` per attachment, oldest first."""
        with self._lock:
            return [dict(a) for a in self._issues[key].attachments]

    @property
    def links(self) -> list[dict[str, str]]:
        """`{id, type, inward, outward}` per issue link (issue keys)."""
        with self._lock:
            return [dict(link) for link in self._links]

    def properties(self, key: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._issues[key].properties)

    # --- state changes (under the lock: endpoints are called holding it, Actor entry points take it) ---

    def _find(self, id_or_key: str) -> _Issue:
        issue = self._issues.get(id_or_key.upper()) or next(
            (i for i in self._issues.values() if i.id == id_or_key), None)
        if issue is None:
            raise ApiError(404, NO_ISSUE)
        return issue

    def _user_for(self, ref: Any, fieldname: str) -> str | None:
        """Account id from `{accountId}` (Cloud) or `{name}` (Server); None, "-1" or null unassign."""
        ref = ref or {}
        if self.cloud and "name" in ref:
            raise ApiError(
                400, "'accountId' must be the only user identifying query parameter in GDPR strict mode.")
        wanted = ref.get("accountId") if self.cloud else ref.get("name")
        if wanted in (None, "-1"):
            return None
        for user in self._users.values():
            if wanted == (user.account_id if self.cloud else user.name):
                return user.account_id
        raise ApiError(400, errors={fieldname: f"User '{wanted}' cannot be assigned issues."})

    def _check_names(self, names: list[str], allowed: set[str]) -> None:
        for name in names:
            if name in self._invalid_fields:
                raise ApiError(400, errors={name: self._invalid_fields[name]})
            if name not in allowed:
                raise ApiError(400, errors={
                    name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."})

    def _check_values(self, fields: dict[str, Any]) -> None:
        if "summary" in fields and not str(fields["summary"] or "").strip():
            raise ApiError(400, errors={"summary": "You must specify a summary of the issue."})
        if "description" in fields and not isinstance(fields["description"], str | None):
            raise ApiError(400, errors={"description": "Operation value must be a string"})
        if "priority" in fields and self._priority_name(fields["priority"]) not in self.priorities:
            raise ApiError(400, errors={"priority": "The priority selected is invalid."})
        for label in fields.get("labels") or []:
            self._check_label(label)
        due = fields.get("duedate")
        if due is not None and not (isinstance(due, str) and _DATE.fullmatch(due) and _valid_date(due)):
            raise ApiError(400, errors={"duedate": f"Error parsing date string: {due}"})

    def _priority_name(self, ref: Any) -> str | None:
        ref = ref if isinstance(ref, dict) else {}
        by_id = (n for n in self.priorities if self._priority_id(n) == str(ref.get("id")))
        return ref.get("name") or next(by_id, None)

    def _check_comments(self, update: dict[str, Any]) -> list[str]:
        bodies = [op["add"]["body"] for op in update.get("comment", [])]
        if not all(isinstance(b, str) and b.strip() for b in bodies):
            raise ApiError(400, errors={"comment": "Comment body can not be empty!"})
        return bodies

    def _check_label(self, label: Any) -> None:
        if not isinstance(label, str) or not label or " " in label or len(label) > 255:
            raise ApiError(400, errors={"labels": f"The label '{label}' contains spaces which is invalid."})

    def _create(self, user: JiraUser, body: dict[str, Any]) -> _Issue:
        fields = body.get("fields") or {}
        self._check_names(list(fields), CREATABLE)
        self._check_values(fields)
        project = fields.get("project") or {}
        key = project.get("key") or next(
            (k for k in self.projects if self._project_id(k) == str(project.get("id"))), None)
        if key not in self.projects:
            raise ApiError(400, errors={"project": "Specify a valid project ID or key"})
        kind = fields.get("issuetype") or {}
        kind_name = kind.get("name") or next(
            (n for n in self.issue_types if self._type_id(n) == str(kind.get("id"))), None)
        if kind_name not in self.issue_types:
            raise ApiError(400, errors={"issuetype": "Specify an issue type"})
        if "summary" not in fields:
            raise ApiError(400, errors={"summary": "You must specify a summary of the issue."})
        stamp = now_jira()
        number = next(self._counters.setdefault(key, itertools.count(1)))
        issue = _Issue(
            id=str(next(self._ids)), key=f"{key}-{number}", project=key, issuetype=kind_name,
            summary=fields["summary"], description=fields.get("description"),
            priority=self._priority_name(fields["priority"]) if "priority" in fields else "Medium",
            labels=list(fields.get("labels") or []), duedate=fields.get("duedate"),
            assignee=self._user_for(fields.get("assignee"), "assignee"), reporter=user.account_id,
            status=next(iter(self.workflow)), created=stamp, updated=stamp, created_at=time.monotonic(),
        )
        self._issues[issue.key] = issue
        self._webhooks.append(self._event("jira:issue_created", "issue_created", user, issue))
        return issue

    def _edit(self, user: JiraUser, issue: _Issue, body: dict[str, Any]) -> None:
        fields, update = dict(body.get("fields") or {}), dict(body.get("update") or {})
        comments = self._check_comments(update)
        update.pop("comment", None)
        self._check_names([*fields, *update], EDITABLE)
        labels = list(fields.pop("labels", issue.labels) or [])
        for op in update.pop("labels", []):
            for verb, value in op.items():
                if verb == "set":
                    labels = list(value)
                elif verb == "add" and value not in labels:
                    labels.append(value)
                elif verb == "remove":
                    labels = [label for label in labels if label != value]
        for name, ops in update.items():
            fields.update({name: op["set"] for op in ops if "set" in op})
        self._check_values(fields | {"labels": labels})
        assignee = self._user_for(fields["assignee"], "assignee") if "assignee" in fields else issue.assignee
        items = []  # validated above: from here on nothing fails half-way
        if labels != issue.labels:
            items.append(self._item("labels", None, " ".join(issue.labels), None, " ".join(labels)))
            issue.labels = labels
        for name in ("summary", "description", "duedate"):
            if name in fields and fields[name] != getattr(issue, name):
                items.append(self._item(name, None, getattr(issue, name), None, fields[name]))
                setattr(issue, name, fields[name])
        if "priority" in fields and self._priority_name(fields["priority"]) != issue.priority:
            new = self._priority_name(fields["priority"])
            items.append(self._item("priority", self._priority_id(issue.priority), issue.priority,
                                    self._priority_id(new), new))
            issue.priority = new
        items += self._assign_items(issue, assignee)
        if items:
            issue.updated = now_jira()
            self._webhooks.append(self._event("jira:issue_updated", "issue_updated", user, issue, items))
        for body_text in comments:
            self._add_comment(user, issue, body_text)

    def _assign_items(self, issue: _Issue, account_id: str | None) -> list[dict[str, Any]]:
        if account_id == issue.assignee:
            return []
        old, new = (self._users.get(a) if a else None for a in (issue.assignee, account_id))
        item = self._item("assignee", issue.assignee, old.display_name if old else None,
                          account_id, new.display_name if new else None)
        if self.cloud:
            item |= {"tmpFromAccountId": issue.assignee, "tmpToAccountId": account_id}
        issue.assignee, issue.updated = account_id, now_jira()
        return [item]

    def _assign(self, user: JiraUser, key: str, account_id: str | None) -> list[dict[str, Any]]:
        with self._lock:
            issue = self._find(key)
            if account_id is not None and account_id not in self._users:
                raise ValueError(f"no such Jira user {account_id!r}; register it with as_user()")
            items = self._assign_items(issue, account_id)
            event = self._event("jira:issue_updated", "issue_assigned", user, issue, items)
            if items:
                self._webhooks.append(event)
            return [event]

    def _add_comment(self, user: JiraUser, issue: _Issue, body: Any) -> dict[str, Any]:
        self._check_comments({"comment": [{"add": {"body": body}}]})
        stamp = now_jira()
        comment = {"id": str(next(self._comment_ids)), "author": user.account_id, "body": body,
                   "created": stamp, "updated": stamp}
        issue.comments.append(comment)
        issue.updated = stamp
        rendered = self._comment_json(issue, comment)
        self._webhooks.append(
            self._event("jira:issue_updated", "issue_commented", user, issue, comment=rendered))
        brief = self._issue_json(issue, ["summary", "status", "priority", "assignee", "issuetype", "project"])
        created = {"timestamp": int(time.time() * 1000), "webhookEvent": "comment_created",
                   "comment": rendered, "issue": brief}
        self._webhooks.append(created)
        return comment

    def _comment(self, user: JiraUser, key: str, body: str) -> list[dict[str, Any]]:
        with self._lock:
            self._add_comment(user, self._find(key), body)
            return [self._webhooks[-1]]

    def _apply_transition(self, user: JiraUser, issue: _Issue, transition_id: str, body: dict[str, Any]
                          ) -> list[dict[str, Any]]:
        available = self._available(issue)
        if transition_id not in available:
            raise ApiError(400, f"Transition id '{transition_id}' is not valid for this issue.")
        name, target = available[transition_id]
        fields = dict(body.get("fields") or {})
        resolution = (fields.pop("resolution", None) or {}).get("name")
        comments = self._check_comments(body.get("update") or {})
        self._check_names(list(fields), EDITABLE)
        self._check_values(fields)
        if fields:
            self._edit(user, issue, {"fields": fields})
        status_ids = self._status_ids()
        items = [self._item("status", status_ids[issue.status], issue.status, status_ids[target], target)]
        done = self._category(target) == "done"
        new_resolution = (resolution or "Done") if done else None
        if new_resolution != issue.resolution:
            items.append(self._item("resolution", None, issue.resolution, None, new_resolution))
        issue.transitions.append({"id": transition_id, "name": name, "from": issue.status, "to": target,
                                  "by": user.account_id})
        issue.status, issue.resolution, issue.updated = target, new_resolution, now_jira()
        event = self._event("jira:issue_updated", "issue_generic", user, issue, items)
        self._webhooks.append(event)
        events = [event]
        for text in comments:
            self._add_comment(user, issue, text)
            events.append(self._webhooks[-1])
        return events

    def _transition_to(self, user: JiraUser, key: str, status_name: str, comment: str | None
                       ) -> list[dict[str, Any]]:
        with self._lock:
            issue = self._find(key)
            ids = [tid for tid, (_, to) in self._available(issue).items() if to == status_name]
            if not ids:
                raise ValueError(f"the workflow has no transition from {issue.status!r} to {status_name!r}")
            update = {"comment": [{"add": {"body": comment}}]} if comment else {}
            return self._apply_transition(user, issue, ids[0], {"update": update})

    # --- workflow and lookups ---------------------------------------------------------------

    def _status_ids(self) -> dict[str, str]:
        names = dict.fromkeys(n for src, out in self.workflow.items() for n in (src, *out.values()))
        return {name: str(10000 + i) for i, name in enumerate(names)}

    def _transition_ids(self) -> dict[str, str]:
        names = dict.fromkeys(n for out in self.workflow.values() for n in out)
        return {name: str(11 + 10 * i) for i, name in enumerate(names)}

    def _available(self, issue: _Issue) -> dict[str, tuple[str, str]]:
        ids = self._transition_ids()
        return {ids[name]: (name, to) for name, to in self.workflow.get(issue.status, {}).items()}

    def _category(self, status: str) -> str:
        return self.status_categories.get(status, "indeterminate")

    def _project_id(self, key: str) -> str:
        return str(10000 + list(self.projects).index(key))

    def _type_id(self, name: str) -> str:
        return str(10001 + self.issue_types.index(name))

    def _priority_id(self, name: str) -> str:
        return str(1 + self.priorities.index(name))

    # --- rendering (callers hold the lock) --------------------------------------------------

    @property
    def _api(self) -> str:
        return f"{self.base_url}/rest/api/2"

    def _user_json(self, account_id: str | None) -> dict[str, Any] | None:
        user = self._users.get(account_id) if account_id else None
        if user is None:
            return None
        common = {"emailAddress": user.email, "displayName": user.display_name, "active": True,
                  "timeZone": "Etc/UTC"}
        if self.cloud:
            return {"self": f"{self._api}/user?accountId={user.account_id}", "accountId": user.account_id,
                    "accountType": "atlassian", **common}
        return {"self": f"{self._api}/user?username={user.name}", "name": user.name, "key": user.name,
                **common}

    def _status_json(self, name: str) -> dict[str, Any]:
        sid = self._status_ids().get(name, "1")
        category = CATEGORIES[self._category(name)]
        return {"self": f"{self._api}/status/{sid}", "description": "", "name": name, "id": sid,
                "statusCategory": {"self": f"{self._api}/statuscategory/{category['id']}", **category}}

    def _project_json(self, key: str) -> dict[str, Any]:
        pid = self._project_id(key)
        return {"self": f"{self._api}/project/{pid}", "id": pid, "key": key, "name": self.projects[key],
                "projectTypeKey": "software", "simplified": False}

    def _type_json(self, name: str) -> dict[str, Any]:
        tid = self._type_id(name)
        return {"self": f"{self._api}/issuetype/{tid}", "id": tid, "name": name, "description": "",
                "subtask": False}

    def _priority_json(self, name: str) -> dict[str, Any]:
        pid = self._priority_id(name)
        return {"self": f"{self._api}/priority/{pid}", "id": pid, "name": name}

    def _comment_json(self, issue: _Issue, comment: dict[str, Any]) -> dict[str, Any]:
        author = self._user_json(comment["author"])
        return {"self": f"{self._api}/issue/{issue.id}/comment/{comment['id']}", "id": comment["id"],
                "author": author, "body": comment["body"], "updateAuthor": author,
                "created": comment["created"], "updated": comment["updated"], "jsdPublic": True}

    def _issue_json(self, issue: _Issue, only: list[str] | None = None, properties: list[str] | None = None
                    ) -> dict[str, Any]:
        comments = [self._comment_json(issue, c) for c in issue.comments]
        fields = {
            "summary": issue.summary, "description": issue.description,
            "status": self._status_json(issue.status),
            "priority": self._priority_json(issue.priority), "labels": list(issue.labels),
            "assignee": self._user_json(issue.assignee), "reporter": self._user_json(issue.reporter),
            "creator": self._user_json(issue.reporter), "issuetype": self._type_json(issue.issuetype),
            "project": self._project_json(issue.project), "created": issue.created, "updated": issue.updated,
            "resolution": None if issue.resolution is None else {
                "self": f"{self._api}/resolution/10000", "id": "10000", "name": issue.resolution},
            "comment": {"comments": comments, "maxResults": len(comments), "total": len(comments),
                        "startAt": 0},
            "duedate": issue.duedate,
            "attachment": [self._attachment_json(a) for a in issue.attachments],
            "issuelinks": self._issue_links_json(issue),
        }
        if only is not None and not {"*all", "*navigable"} & set(only):
            fields = {k: v for k, v in fields.items() if k in only}
        rendered = {"expand": "renderedFields,names,schema,operations,editmeta,changelog",
                    "id": issue.id, "self": f"{self._api}/issue/{issue.id}", "key": issue.key,
                    "fields": fields}
        if properties:
            rendered["properties"] = {k: issue.properties[k] for k in properties if k in issue.properties}
        return rendered

    def _attachment_json(self, attachment: dict[str, Any]) -> dict[str, Any]:
        aid, name = attachment["id"], attachment["filename"]
        return {"self": f"{self._api}/attachment/{aid}", "id": aid, "filename": name,
                "author": self._user_json(attachment["author"]), "created": attachment["created"],
                "size": attachment["size"], "mimeType": attachment["mimeType"],
                "content": f"{self.base_url}/secure/attachment/{aid}/{name}"}

    def _link_type_json(self, name: str) -> dict[str, Any]:
        tid = str(10000 + list(LINK_TYPES).index(name))
        inward, outward = LINK_TYPES[name]
        return {"id": tid, "name": name, "inward": inward, "outward": outward,
                "self": f"{self._api}/issueLinkType/{tid}"}

    def _issue_links_json(self, issue: _Issue) -> list[dict[str, Any]]:
        """Each link as the issue shows it: the other issue under `outwardIssue` or `inwardIssue`."""
        out = []
        for link in self._links:
            if issue.key not in (link["inward"], link["outward"]):
                continue
            side, other = ("outwardIssue", link["outward"]) if link["inward"] == issue.key else \
                ("inwardIssue", link["inward"])
            linked = self._issues[other]
            brief = {"id": linked.id, "key": linked.key, "self": f"{self._api}/issue/{linked.id}", "fields": {
                "summary": linked.summary, "status": self._status_json(linked.status),
                "priority": self._priority_json(linked.priority), "issuetype": self._type_json(linked.issuetype)}}
            out.append({"id": link["id"], "self": f"{self._api}/issueLink/{link['id']}",
                        "type": self._link_type_json(link["type"]), side: brief})
        return out

    def _item(self, name: str, old: str | None, old_text: str | None, new: str | None, new_text: str | None
              ) -> dict[str, Any]:
        return {"field": name, "fieldtype": "jira", "fieldId": name, "from": old, "fromString": old_text,
                "to": new, "toString": new_text}

    def _event(self, kind: str, type_name: str, user: JiraUser, issue: _Issue,
               items: list[dict[str, Any]] | None = None, comment: dict[str, Any] | None = None,
               ) -> dict[str, Any]:
        event: dict[str, Any] = {"timestamp": int(time.time() * 1000), "webhookEvent": kind,
                                 "issue_event_type_name": type_name, "user": self._user_json(user.account_id),
                                 "issue": self._issue_json(issue)}
        if items:
            event["changelog"] = {"id": str(next(self._changelog_ids)), "items": items}
        if comment is not None:
            event["comment"] = comment
        return event

    # --- request handling (server threads) --------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        status, extra, answer = self._answer(method, path, query, headers, body, document)
        with self._lock:
            ok = 200 <= status < 300
            drop = next((d for d in self._drops if d.matches(method, path)), None) if ok else None
            if drop is not None:
                self._drops.remove(drop)
                status = 0
            self._requests.append(JiraRequest(method, path, query, headers, document, status))
        return status, extra, answer

    def _answer(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
                raw: bytes, body: Any) -> _Answer:
        with self._lock:
            failure = next((f for f in self._failures if f.matches(method, path)), None)
            if failure is not None:
                self._failures.remove(failure)
        if failure is not None:
            extra = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
            scripted = ApiError(failure.status, HTTPStatus(failure.status).phrase)
            return self._json(failure.status, scripted.body, extra)
        try:
            if method == "POST" and _ATTACHMENTS.fullmatch(path):
                body = self._multipart(headers, raw)
            elif raw and method in ("POST", "PUT") and "json" not in headers.get("content-type", ""):
                raise ApiError(415, "Unsupported Media Type")
            if raw and body is None:
                raise ApiError(400, "Unexpected character in the request body: it is not JSON.")
            user = self._authenticate(headers.get("authorization"), anonymous_ok=path.endswith("/serverInfo"))
            for verb, pattern, handler in _ROUTES:
                match = pattern.fullmatch(path)
                if verb == method and match:
                    with self._lock:
                        status, payload = handler(self, user, *[unquote(g) for g in match.groups()],
                                                  query=query, body=body)
                    return self._json(status, payload)
            raise ApiError(404, f"No resource for {method} {path} in jira_server.")
        except ApiError as err:
            extra = {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"} if err.status == 401 else {}
            return self._json(err.status, err.body, extra)

    def _multipart(self, headers: dict[str, str], raw: bytes) -> list[tuple[str, bytes]]:
        """The `file` parts of a multipart upload; Jira refuses the request without its XSRF opt-out header."""
        if headers.get("x-atlassian-token", "").lower() != "no-check":
            raise ApiError(403, "XSRF check failed")
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise ApiError(415, "Unsupported Media Type")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        files = [(part.get_filename() or "", part.get_payload(decode=True) or b"")
                 for part in message.iter_parts() if part.get_param("name", header="content-disposition") == "file"]
        if not files:
            raise ApiError(400, "No file(s) were attached (the multipart field must be named 'file').")
        return files

    def _json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> _Answer:
        headers = dict(extra or {})
        if status == 204 or payload is None:
            return status, headers, b""
        headers["Content-Type"] = "application/json;charset=UTF-8"
        return status, headers, json.dumps(payload).encode()

    def _authenticate(self, authorization: str | None, *, anonymous_ok: bool) -> JiraUser | None:
        scheme, _, credential = (authorization or "").partition(" ")
        with self._lock:
            account_id = None
            if scheme.lower() == "basic":
                try:
                    login, _, secret = base64.b64decode(credential).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    login = secret = ""
                account_id = self._basic.get((login, secret))
            elif scheme.lower() == "bearer" and not self.cloud:
                account_id = self._bearer.get(credential)
            if account_id is not None:
                return self._users[account_id]
        if authorization is None and anonymous_ok:
            return None
        raise ApiError(401, NOT_AUTHENTICATED)

    # --- endpoints (called with the lock held) ----------------------------------------------

    def _server_info(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        version = "1001.0.0-SNAPSHOT" if self.cloud else "9.12.0"
        return 200, {"baseUrl": self.base_url, "version": version,
                     "versionNumbers": [1001, 0, 0] if self.cloud else [9, 12, 0],
                     "deploymentType": self.deployment, "buildNumber": 100280 if self.cloud else 9120000,
                     "serverTitle": "Jira (jira_server)", "serverTime": now_jira()}

    def _myself(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        if user is None:
            raise ApiError(401, NOT_AUTHENTICATED)
        return 200, self._user_json(user.account_id) | {"locale": "en_US", "groups": {"size": 1, "items": []}}

    def _fields(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        names = ("summary", "description", "status", "priority", "labels", "assignee", "reporter", "creator",
                 "issuetype", "project", "created", "updated", "resolution", "comment", "duedate", "attachment",
                 "issuelinks")
        return 200, [{"id": n, "key": n, "name": n.capitalize(), "custom": False, "orderable": n in CREATABLE,
                      "navigable": True, "searchable": True, "clauseNames": [n]} for n in names]

    def _issue_types(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        return 200, [self._type_json(n) for n in self.issue_types]

    def _priority_list(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        return 200, [self._priority_json(n) for n in self.priorities]

    def _project(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        found = next((k for k in self.projects if key in (k, self._project_id(k))), None)
        if found is None:
            raise ApiError(404, f"No project could be found with key '{key}'.")
        return 200, self._project_json(found) | {"issueTypes": [self._type_json(n) for n in self.issue_types]}

    def _project_statuses(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        self._need(user)
        if key not in self.projects:
            raise ApiError(404, f"No project could be found with key '{key}'.")
        names = dict.fromkeys(n for src, out in self.workflow.items() for n in (src, *out.values()))
        return 200, [self._type_json(t) | {"statuses": [self._status_json(n) for n in names]} for t in self.issue_types]

    def _user_search(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        if self.cloud and "username" in query:
            raise ApiError(400, "The query parameter 'username' is not supported in GDPR strict mode.")
        term = (query.get("query") or query.get("username") or [""])[0].lower()
        account = (query.get("accountId") or [None])[0]

        def names(u: JiraUser) -> tuple[str, ...]:
            return (u.email, u.display_name) if self.cloud else (u.email, u.display_name, u.name)

        found = [u for u in self._users.values()
                 if u.account_id == account or term and any(v.lower().startswith(term) for v in names(u))]
        return 200, [self._user_json(u.account_id) for u in found]

    def _create_issue(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        issue = self._create(self._need(user), body or {})
        return 201, {"id": issue.id, "key": issue.key, "self": f"{self._api}/issue/{issue.id}"}

    def _get_issue(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        self._need(user)
        only = [f for v in query.get("fields", []) for f in v.split(",")] or None
        props = [p for v in query.get("properties", []) for p in v.split(",")]
        return 200, self._issue_json(self._find(key), only, props)

    def _edit_issue(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        self._edit(self._need(user), self._find(key), body or {})
        return 204, None

    def _put_assignee(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        issue = self._find(key)
        items = self._assign_items(issue, self._user_for(body, "assignee"))
        if items:
            self._webhooks.append(
                self._event("jira:issue_updated", "issue_assigned", self._need(user), issue, items))
        return 204, None

    def _get_transitions(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        self._need(user)
        wanted = (query.get("transitionId") or [None])[0]
        transitions = [{"id": tid, "name": name, "to": self._status_json(to), "hasScreen": False,
                        "isGlobal": False, "isInitial": False, "isConditional": False}
                       for tid, (name, to) in self._available(self._find(key)).items()
                       if wanted in (None, tid)]
        return 200, {"expand": "transitions", "transitions": transitions}

    def _post_transition(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        body = body or {}
        transition_id = str((body.get("transition") or {}).get("id", ""))
        self._apply_transition(self._need(user), self._find(key), transition_id, body)
        return 204, None

    def _get_comments(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        self._need(user)
        issue = self._find(key)
        comments = [self._comment_json(issue, c) for c in issue.comments]
        return 200, {"startAt": 0, "maxResults": len(comments), "total": len(comments), "comments": comments}

    def _post_comment(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        issue = self._find(key)
        comment = self._add_comment(self._need(user), issue, (body or {}).get("body"))
        return 201, self._comment_json(issue, comment)

    def _list_properties(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        self._need(user)
        issue = self._find(key)
        return 200, {"keys": [{"self": f"{self._api}/issue/{issue.id}/properties/{k}", "key": k}
                              for k in issue.properties]}

    def _get_property(self, user: JiraUser | None, key: str, name: str, *, query: dict, body: Any
                      ) -> tuple[int, Any]:
        self._need(user)
        issue = self._find(key)
        if name not in issue.properties:
            raise ApiError(404, f"The property with key '{name}' does not exist.")
        return 200, {"key": name, "value": issue.properties[name]}

    def _put_property(self, user: JiraUser | None, key: str, name: str, *, query: dict, body: Any
                      ) -> tuple[int, Any]:
        self._need(user)
        issue = self._find(key)
        if body is None:
            raise ApiError(400, "The property value must be a valid, non-empty JSON value.")
        if len(name) > 255 or len(json.dumps(body)) > MAX_PROPERTY_BYTES:
            raise ApiError(400, f"The property value exceeds the maximum length of {MAX_PROPERTY_BYTES}.")
        status = 200 if name in issue.properties else 201
        issue.properties[name] = body
        return status, None

    def _delete_property(self, user: JiraUser | None, key: str, name: str, *, query: dict, body: Any
                         ) -> tuple[int, Any]:
        self._need(user)
        if self._find(key).properties.pop(name, None) is None:
            raise ApiError(404, f"The property with key '{name}' does not exist.")
        return 204, None

    def _add_attachments(self, user: JiraUser | None, key: str, *, query: dict, body: Any) -> tuple[int, Any]:
        author = self._need(user)
        issue = self._find(key)
        added = []
        for filename, data in body:
            attachment = {"id": str(next(self._attachment_ids)), "filename": filename, "size": len(data),
                          "mimeType": mimetypes.guess_type(filename)[0] or "application/octet-stream",
                          "author": author.account_id, "created": now_jira(), "data": data}
            issue.attachments.append(attachment)
            added.append(self._attachment_json(attachment))
        issue.updated = now_jira()
        return 200, added

    def _link_types(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        self._need(user)
        return 200, {"issueLinkTypes": [self._link_type_json(n) for n in LINK_TYPES]}

    def _create_link(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        self._need(user)
        body = body or {}
        kind = body.get("type") or {}
        name = kind.get("name") or next(
            (n for n in LINK_TYPES if self._link_type_json(n)["id"] == str(kind.get("id"))), None)
        if name not in LINK_TYPES:
            raise ApiError(404, f"No issue link type with name '{kind.get('name') or kind.get('id')}' found.")
        ends = []
        for side in ("inwardIssue", "outwardIssue"):
            ref = body.get(side) or {}
            ends.append(self._find(str(ref.get("key") or ref.get("id") or "")).key)
        inward, outward = ends
        known = any(link["type"] == name and link["inward"] == inward and link["outward"] == outward
                    for link in self._links)
        if not known:  # Jira keeps one link per (type, inward, outward)
            self._links.append({"id": str(next(self._link_ids)), "type": name, "inward": inward,
                                "outward": outward})
        comment = body.get("comment")
        if isinstance(comment, dict) and comment.get("body"):
            self._add_comment(user, self._find(outward), comment["body"])  # type: ignore[arg-type]
        return 201, None

    def _search(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        if self.cloud:
            raise ApiError(410, "The requested API has been removed. Please migrate to the "
                                "/rest/api/3/search/jql API. A full migration guideline is available at "
                                "https://developer.atlassian.com/changelog/#CHANGE-2046")
        params = self._search_params(query, body)
        found = self._matching(self._need(user), params["jql"])
        start, size = int(params.get("startAt") or 0), min(int(params.get("maxResults") or 50), 100)
        page = found[start:start + size]
        return 200, {"expand": "schema,names", "startAt": start, "maxResults": size, "total": len(found),
                     "issues": [self._issue_json(i, params["fields"], params["properties"]) for i in page]}

    def _search_jql(self, user: JiraUser | None, *, query: dict, body: Any) -> tuple[int, Any]:
        if not self.cloud:
            raise ApiError(404, "No resource for search/jql: Jira Server/Data Center has GET/POST search.")
        params = self._search_params(query, body)
        found = self._matching(self._need(user), params["jql"])
        start, size = int(params.get("nextPageToken") or 0), min(int(params.get("maxResults") or 50), 5000)
        page, more = found[start:start + size], start + size < len(found)
        fields = params["fields"] or ["id"]  # search/jql returns only ids unless fields are asked for
        result: dict[str, Any] = {"issues": [self._issue_json(i, fields, params["properties"]) for i in page],
                                  "isLast": not more}
        if more:
            result["nextPageToken"] = str(start + size)
        return 200, result

    def _search_params(self, query: dict[str, list[str]], body: Any) -> dict[str, Any]:
        if isinstance(body, dict):  # POST: a JSON body with the same names
            params = dict(body)
            params["fields"] = list(body.get("fields") or [])
            params["properties"] = list(body.get("properties") or [])
        else:
            params = {k: v[-1] for k, v in query.items()}
            params["fields"] = [f for v in query.get("fields", []) for f in v.split(",") if f]
            params["properties"] = [p for v in query.get("properties", []) for p in v.split(",") if p]
        if not params.get("jql"):
            raise ApiError(400, "The JQL query is required.")
        return params

    def _matching(self, user: JiraUser, jql: str) -> list[_Issue]:
        clauses, newest_first = parse_jql(jql)
        for name, _, value in clauses:
            if name == "project" and value.upper() not in self.projects:
                raise ApiError(400, f"The value '{value}' does not exist for the field 'project'.")
        visible_before = time.monotonic() - self.index_delay
        found = [i for i in self._issues.values() if i.created_at <= visible_before and all(
            (self._value_matches(i, name, value)) == (op == "=") for name, op, value in clauses)]
        return sorted(found, key=lambda i: int(i.id), reverse=newest_first)

    def _value_matches(self, issue: _Issue, name: str, value: str) -> bool:
        if name == "labels":
            return value in issue.labels
        if name == "project":
            return issue.project == value.upper()
        if name == "key":
            return issue.key == value.upper()
        if name == "status":
            return issue.status.lower() == value.lower()
        _, key, path = name.split(":", 2)
        if (key, path) not in self._indexed or key not in issue.properties:
            return False
        stored: Any = issue.properties[key]
        for step in path.split("."):
            if not isinstance(stored, dict) or step not in stored:
                return False
            stored = stored[step]
        return _same(stored, value)

    def _need(self, user: JiraUser | None) -> JiraUser:
        if user is None:
            raise ApiError(401, NOT_AUTHENTICATED)
        return user


_A = r"/rest/api/(?:2|latest)"
_K = r"([^/]+)"
_Endpoint = Callable[..., tuple[int, Any]]
_ATTACHMENTS = re.compile(_A + f"/issue/{_K}/attachments")
_ROUTES: list[tuple[str, re.Pattern[str], _Endpoint]] = [
    (verb, re.compile(_A + pattern), handler) for verb, pattern, handler in [
        ("GET", "/serverInfo", JiraServer._server_info),
        ("GET", "/myself", JiraServer._myself),
        ("GET", "/field", JiraServer._fields),
        ("GET", "/issuetype", JiraServer._issue_types),
        ("GET", "/priority", JiraServer._priority_list),
        ("GET", f"/project/{_K}", JiraServer._project),
        ("GET", f"/project/{_K}/statuses", JiraServer._project_statuses),
        ("GET", "/user/search", JiraServer._user_search),
        ("POST", "/issue", JiraServer._create_issue),
        ("GET", f"/issue/{_K}", JiraServer._get_issue),
        ("PUT", f"/issue/{_K}", JiraServer._edit_issue),
        ("PUT", f"/issue/{_K}/assignee", JiraServer._put_assignee),
        ("GET", f"/issue/{_K}/transitions", JiraServer._get_transitions),
        ("POST", f"/issue/{_K}/transitions", JiraServer._post_transition),
        ("GET", f"/issue/{_K}/comment", JiraServer._get_comments),
        ("POST", f"/issue/{_K}/comment", JiraServer._post_comment),
        ("GET", f"/issue/{_K}/properties/?", JiraServer._list_properties),
        ("GET", f"/issue/{_K}/properties/{_K}", JiraServer._get_property),
        ("PUT", f"/issue/{_K}/properties/{_K}", JiraServer._put_property),
        ("DELETE", f"/issue/{_K}/properties/{_K}", JiraServer._delete_property),
        ("POST", f"/issue/{_K}/attachments", JiraServer._add_attachments),
        ("GET", "/issueLinkType", JiraServer._link_types),
        ("POST", "/issueLink", JiraServer._create_link),
        ("GET", "/search", JiraServer._search),
        ("POST", "/search", JiraServer._search),
        ("GET", "/search/jql", JiraServer._search_jql),
        ("POST", "/search/jql", JiraServer._search_jql),
    ]
]


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs under parallel clients: a 1 s retransmit each
    owner: JiraServer

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that timed out has gone away before the (deliberately late) answer; that is the test.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd

    def _serve(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, extra, answer = owner._handle(self.command, self.path, headers, body)
        if owner.latency:
            owner._stopping.wait(owner.latency)  # Jira's latency, after the change; stop() cuts it short
        if status == 0:
            self.close_connection = True  # the change is made, the answer is lost
            return
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: the test asserts on the records instead."""

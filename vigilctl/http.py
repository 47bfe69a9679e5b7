"""Calls to Vigil's HTTP API; its one error shape becomes the message the CLI exits with."""

from __future__ import annotations

from typing import Any

import click
import httpx

from vigilctl.config import CONFIG_ENV, KEY_ENV, ConfigError

# Distinct codes let a script tell "Vigil said no" from "Vigil was not there" (worth a retry); usage and
# configuration errors are 2, as click's own.
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


class ApiRefused(click.ClickException):
    """The API answered with an error: its message, code and details."""

    exit_code = EXIT_REFUSED

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        lines = [f"{message} (HTTP {status} {code})"]
        if isinstance(details, list):  # validation errors: one {field, message} per problem
            lines += [f"  {d.get('field', '?')}: {d.get('message', '')}" for d in details if isinstance(d, dict)]
        super().__init__("\n".join(lines))
        self.status = status
        self.code = code

    @classmethod
    def of(cls, resp: httpx.Response) -> ApiRefused:
        try:
            error = resp.json()["error"]
            return cls(resp.status_code, error["code"], error["message"], error.get("details"))
        except (ValueError, KeyError, TypeError):
            # Not Vigil's error shape: a proxy or load balancer in front of it answered.
            text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else resp.reason_phrase
            return cls(resp.status_code, "http_error", text)


class Unreachable(click.ClickException):
    exit_code = EXIT_UNREACHABLE


class Api:
    """Vigil's API at `url`, authenticated with a person's API key."""

    def __init__(self, url: str, key: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.key = key
        try:
            self._http = httpx.Client(base_url=self.url, timeout=timeout, headers={"User-Agent": "vigil-cli"})
        except httpx.InvalidURL as err:
            raise ConfigError(f"invalid Vigil URL {url!r}: {err}") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict | None = None) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def download(self, path: str, **params: Any) -> httpx.Response:
        """A GET whose answer is not JSON (a Markdown, HTML or PDF rendering): the response itself."""
        return self.send("GET", path, params={k: v for k, v in params.items() if v is not None})

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.send(method, path, **kwargs)
        return resp.json() if resp.content else None

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self.key:
            raise ConfigError(
                f"no API key: set {KEY_ENV}, pass --key, or put api_key in the config file ({CONFIG_ENV} names it)"
            )
        try:
            resp = self._http.request(method, path, headers={"Authorization": f"Bearer {self.key}"}, **kwargs)
        except httpx.TransportError as err:  # connection refused, DNS, TLS, timeouts, unsupported scheme
            raise Unreachable(f"cannot reach Vigil at {self.url}: {err or type(err).__name__}") from None
        if resp.is_error:
            raise ApiRefused.of(resp)
        return resp

"""/docs and /redoc work offline: their pages load only assets the app itself serves."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
import pytest

pytestmark = pytest.mark.asyncio


class AssetLinks(HTMLParser):
    """Every URL a page makes the browser load: script src, link href."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


@pytest.mark.parametrize(("page", "types"), [
    ("/docs", {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}),
    ("/redoc", {"redoc.standalone.js": "javascript", "favicon.png": "image/png"}),
])
async def test_docs_page_loads_only_local_assets(live_api: str, page: str, types: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=live_api, timeout=10) as http:
        resp = await http.get(page)
        assert resp.status_code == 200, resp.text
        links = AssetLinks()
        links.feed(resp.text)
        assert sorted(url.rsplit("/", 1)[-1] for url in links.urls) == sorted(types), links.urls
        for url in links.urls:
            assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert types[url.rsplit("/", 1)[-1]] in asset.headers["content-type"], (url, asset.headers)
            assert len(asset.content) > 1000 or url.endswith(".png"), f"{url} is suspiciously small"
        # The page's script fetches the schema from this app too.
        assert "url: '/openapi.json'" in resp.text or 'spec-url="/openapi.json"' in resp.text, resp.text

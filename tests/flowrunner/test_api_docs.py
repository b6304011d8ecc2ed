"""`/api/docs`: Swagger UI from the installed package's static files, nothing loaded from a CDN."""

from __future__ import annotations

import re

from django.test import Client


def test_api_docs_loads_swagger_ui_from_the_server_itself(db):
    # given the docs page
    client = Client()
    page = client.get("/api/docs")
    html = page.content.decode()
    # when its scripts and stylesheets are read
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", html)
    # then none is on another host (a CDN, `@latest`), and each is served by this server
    assert page.status_code == 200 and assets, html
    assert "cdn.jsdelivr.net" not in html and "@latest" not in html
    for asset in assets:
        assert asset.startswith("/static/drf_spectacular_sidecar/"), asset
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert b"".join(answer.streaming_content if answer.streaming else [answer.content])

"""The `webhook` kind: send the document (or a chosen body) to a URL; non-2xx is a retryable failure."""

from __future__ import annotations

from typing import Any

from flows.nodes.base import (
    NodeContext,
    NodeError,
    NodeKind,
    NodeResult,
    Report,
)
from flows.nodes.http_request import DEFAULT_TIMEOUT, METHODS, request_kwargs, request_target, send
from flows.nodes.params import Checker, is_expression, type_name
from flows.nodes.registry import register


class WebhookKind(NodeKind):
    name = "webhook"

    def validate_params(self, params: dict[str, Any], report: Report) -> None:
        check = Checker(params, report)
        check.allow("url", "method", "headers", "body")
        url = check.string("url", required=True)
        if url is not None and not is_expression(url) and not url.lower().startswith(("http://", "https://")):
            report("url", f"'url' must be an absolute http:// or https:// URL, got '{url}'")
        check.choice("method", METHODS, upper=True)
        for key, value in (check.mapping("headers") or {}).items():
            if not isinstance(value, str | int | float | bool):
                report(f"headers.{key}", f"'headers.{key}' must be text or a number, got {type_name(value)}")

    def run(self, ctx: NodeContext) -> NodeResult:
        params = ctx.render(ctx.node.params)
        url, method = request_target(params, default_method="POST")
        # No body given: the whole document goes out, which is what a webhook receiver usually wants.
        body = params["body"] if params.get("body") is not None else ctx.document
        kwargs = request_kwargs({"headers": params.get("headers"), "body": body})
        response = send(method, url, kwargs, timeout=ctx.timeout or DEFAULT_TIMEOUT, label="webhook ")
        if not 200 <= response.status_code < 300:
            raise NodeError(f"webhook {method} {url} answered {response.status_code}", type="http_error")
        return NodeResult(output={"status_code": response.status_code, "success": True})


register(WebhookKind())

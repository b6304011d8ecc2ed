"""Dashboard pages: server-rendered first paint from the selectors; static JavaScript keeps them live."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles.views import serve as staticfiles_serve
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from accounts.models import Account
from accounts.selectors import member_account
from dashboard.graph import layout
from dashboard.security import apply_headers, secure_page
from executions.models import TERMINAL_EXECUTION_STATUSES, Execution, ExecutionStatus
from executions.selectors import execution_get, execution_list, redacted_status
from flows.selectors import flow_get, flow_list, flow_versions

PAGE_SIZE = 50
RECENT_RUNS = 10
STATUS_CHOICES = [choice for choice, _ in ExecutionStatus.choices]


def _account(request: HttpRequest) -> Account | None:
    return member_account(request.user)


def dashboard_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Security headers, sign-in required, and the caller's account passed to the view as `account`."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        account = _account(request)
        if account is None:
            # e.g. a bare superuser: the admin is theirs, the dashboard shows one tenant's data only.
            return render(request, "dashboard/no_account.html", status=403)
        return view(request, *args, account=account, **kwargs)

    return secure_page(login_required(require_GET(wrapper)))


def _row(execution: Execution) -> dict[str, Any]:
    return {
        "id": str(execution.id),
        "flow_id": execution.flow_id,
        "flow_name": execution.flow.name,
        "status": execution.status,
        "progress": round(float(execution.progress), 2),
        "current_node": execution.current_node or "",
        "created_at": execution.created_at,
        "finished_at": execution.finished_at,
        "error": execution.error or "",
    }


def _offset(request: HttpRequest) -> int:
    try:
        return max(0, int(request.GET.get("offset", "0")))
    except ValueError:
        return 0


@dashboard_page
def executions_page(request: HttpRequest, *, account: Account) -> HttpResponse:
    status = request.GET.get("status") or ""
    status = status if status in STATUS_CHOICES else ""
    flows = list(flow_list(account=account).values("id", "name"))
    flow_id = request.GET.get("flow") or ""
    flow_id = flow_id if any(flow["id"] == flow_id for flow in flows) else ""
    offset = _offset(request)
    queryset = execution_list(account=account, flow_id=flow_id or None, status=status or None)
    page = list(queryset.select_related("flow")[offset : offset + PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    rows = [_row(execution) for execution in page[:PAGE_SIZE]]
    config = {
        "status": status,
        "flow_id": flow_id,
        "live": offset == 0,
        "flow_names": {flow["id"]: flow["name"] for flow in flows},
    }
    context = {
        "rows": rows,
        "flows": flows,
        "statuses": STATUS_CHOICES,
        "status": status,
        "flow_id": flow_id,
        "offset": offset,
        "newer": max(0, offset - PAGE_SIZE) if offset else None,
        "older": offset + PAGE_SIZE if more else None,
        "config": config,
        "nav": "executions",
    }
    return render(request, "dashboard/executions.html", context)


def _node_statuses(execution: Execution, node_ids: list[str]) -> dict[str, str]:
    """Each node's latest (non-batch) run status; a node that never ran is `skipped` once the run is over."""
    latest: dict[str, str] = {}
    runs = (
        execution.node_runs.filter(batch_index__isnull=True).order_by("id").values_list("node_id", "status")
    )
    for node_id, status in runs:
        latest[node_id] = status
    idle = "skipped" if execution.status in TERMINAL_EXECUTION_STATUSES else "pending"
    return {node_id: latest.get(node_id, idle) for node_id in node_ids}


@dashboard_page
def execution_page(request: HttpRequest, execution_id: str, *, account: Account) -> HttpResponse:
    execution = execution_get(account=account, execution_id=execution_id)
    spec = execution.flow_version.spec or {}
    graph = layout(spec)
    statuses = _node_statuses(execution, [node.id for node in graph.nodes])
    for node in graph.nodes:
        node.status = statuses[node.id]
    status = redacted_status(execution)
    config = {
        "execution_id": str(execution.id),
        "flow_id": execution.flow_id,
        "status": status,
        "nodes": statuses,
        "api": reverse("execution-detail", args=[execution.id]),
    }
    context = {
        "execution": execution,
        "status": status,
        "graph": graph,
        "document": json.dumps(status["results"], indent=2, sort_keys=True)
        if status["results"] is not None
        else "",
        "input": json.dumps(status["input"], indent=2, sort_keys=True),
        "config": config,
        "nav": "executions",
    }
    return render(request, "dashboard/execution.html", context)


@dashboard_page
def flows_page(request: HttpRequest, *, account: Account) -> HttpResponse:
    flows = list(flow_list(account=account))
    return render(request, "dashboard/flows.html", {"flows": flows, "nav": "flows"})


@dashboard_page
def flow_page(request: HttpRequest, flow_id: str, *, account: Account) -> HttpResponse:
    flow = flow_get(account=account, flow_id=flow_id)
    version = flow.current_version
    recent = execution_list(account=account, flow_id=flow.id).select_related("flow")[:RECENT_RUNS]
    context = {
        "flow": flow,
        "version": version,
        "versions": list(flow_versions(flow=flow)[:100]),
        "graph": layout(version.spec) if version else None,
        "recent": [_row(execution) for execution in recent],
        "config": {"flow_id": flow.id},
        "nav": "flows",
    }
    return render(request, "dashboard/flow.html", context)


STATIC_CACHE = "no-cache"  # revalidate with Last-Modified: cheap, and a deploy is seen at once


@require_GET
def static_file(request: HttpRequest, path: str) -> HttpResponse:
    """Static files (dashboard and admin) from the apps' static folders, since daphne serves none itself.

    `insecure=True` lets staticfiles' finder view run with DEBUG off; it only ever reads the `static/` folders
    of installed apps (paths are normalised, `..` cannot leave them; no directory listings). A deployment
    behind nginx or a CDN can serve `collectstatic`'s STATIC_ROOT instead and never reach this view.
    """
    if ".." in path.split("/"):
        raise Http404("Not found.")  # the finders would refuse it too, but loudly (SuspiciousFileOperation)
    response = staticfiles_serve(request, path, insecure=True)
    response["Cache-Control"] = STATIC_CACHE
    return apply_headers(request, response)

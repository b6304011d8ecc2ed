"""REST routes of the executions app (under /api/v1): runs, executions, logs, node runs, cancel, retry."""

from django.urls import path

from executions import views

urlpatterns = [
    path("flows/<str:flow_id>/run", views.FlowRunView.as_view(), name="flow-run"),
    path("executions", views.ExecutionListView.as_view(), name="execution-list"),
    path("executions/<str:execution_id>", views.ExecutionDetailView.as_view(), name="execution-detail"),
    path(
        "executions/<str:execution_id>/cancel", views.ExecutionCancelView.as_view(), name="execution-cancel"
    ),
    path("executions/<str:execution_id>/retry", views.ExecutionRetryView.as_view(), name="execution-retry"),
    path("executions/<str:execution_id>/logs", views.ExecutionLogsView.as_view(), name="execution-logs"),
    path("executions/<str:execution_id>/nodes", views.ExecutionNodesView.as_view(), name="execution-nodes"),
]

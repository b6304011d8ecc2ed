"""REST routes of the executions app (under /api/v1)."""

urlpatterns: list = []

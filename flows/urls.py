"""REST routes of the flows app (under /api/v1)."""

urlpatterns: list = []

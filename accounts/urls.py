"""REST routes of the accounts app (under /api/v1)."""

urlpatterns: list = []

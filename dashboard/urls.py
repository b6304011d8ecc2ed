"""Dashboard routes (placeholder until the dashboard lands)."""

urlpatterns: list = []

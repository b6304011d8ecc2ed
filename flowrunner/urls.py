"""URL routes: `/api/v1/...` (REST), `/api/v1/schema` + `/api/docs` (OpenAPI), `/admin/`, the dashboard at `/`."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from flowrunner import health, metrics

api_v1 = [
    path("health", health.HealthView.as_view(), name="health"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("", include("accounts.urls")),
    path("", include("flows.urls")),
    path("", include("executions.urls")),
    path("", include("triggers.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]

handler400 = "flowrunner.errors.bad_request"
handler403 = "flowrunner.errors.permission_denied"
handler404 = "flowrunner.errors.not_found"
handler500 = "flowrunner.errors.server_error"

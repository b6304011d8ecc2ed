"""Dashboard routes, mounted at `/`: sign-in, executions, flows, and the static files daphne cannot serve."""

from django.urls import path

from dashboard import auth, views
from dashboard.security import secure_page

app_name = "dashboard"

urlpatterns = [
    path("login", secure_page(auth.DashboardLoginView.as_view()), name="login"),
    path("logout", secure_page(auth.logout_view), name="logout"),
    path("", views.executions_page, name="executions"),
    path("executions/<uuid:execution_id>", views.execution_page, name="execution"),
    path("flows", views.flows_page, name="flows"),
    path("flows/<str:flow_id>", views.flow_page, name="flow"),
    path("static/<path:path>", views.static_file, name="static"),
]

"""REST routes of the flows app (under /api/v1); no trailing slashes, no redirects."""

from django.urls import path

from flows import views

urlpatterns = [
    path("flows", views.FlowListView.as_view(), name="flow-list"),
    path("flows/<str:flow_id>", views.FlowDetailView.as_view(), name="flow-detail"),
    path("flows/<str:flow_id>/versions", views.FlowVersionListView.as_view(), name="flow-versions"),
]

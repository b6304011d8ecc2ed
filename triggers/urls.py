"""REST routes of the triggers app (under /api/v1): schedules, hook triggers, and the hook endpoint."""

from django.urls import path

from triggers import views

urlpatterns = [
    path("flows/<str:flow_id>/schedules", views.FlowScheduleListView.as_view(), name="flow-schedules"),
    path("schedules/<str:schedule_id>", views.ScheduleDetailView.as_view(), name="schedule-detail"),
    path("flows/<str:flow_id>/triggers", views.FlowTriggerListView.as_view(), name="flow-triggers"),
    path("triggers/<str:trigger_id>", views.TriggerDetailView.as_view(), name="trigger-detail"),
    path("hooks/<str:trigger_id>", views.HookView.as_view(), name="hook"),
]

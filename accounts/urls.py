"""REST routes of the accounts app (under /api/v1), without trailing slashes."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("accounts", views.SignupView.as_view(), name="account-signup"),
    path("login", views.LoginView.as_view(), name="login"),
    path("logout", views.LogoutView.as_view(), name="logout"),
    path("accounts/me", views.AccountMeView.as_view(), name="account-me"),
    path("accounts/<str:account_id>/secrets", views.SecretListView.as_view(), name="secret-list"),
    path(
        "accounts/<str:account_id>/secrets/<str:key>", views.SecretDetailView.as_view(), name="secret-detail"
    ),
]

"""Dashboard sign-in and sign-out: Django's session login, with the API's failed-login throttle."""

from __future__ import annotations

from django import forms
from django.contrib.auth import logout
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts import throttling
from core.errors import TooManyAttempts


class ThrottledAuthenticationForm(AuthenticationForm):
    """Failed sign-ins count against the same per-username and per-IP budget as failed API logins, so the
    login page is no cheaper a password-guessing oracle than POST /api/v1/login."""

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        ip = throttling.client_ip(self.request) if self.request else None
        try:
            return throttling.guarded_login(
                super().clean, username=username, ip=ip, failure=forms.ValidationError
            )
        except TooManyAttempts as exc:
            raise forms.ValidationError(
                f"Too many failed sign-ins; try again in {exc.retry_after:.0f} seconds.", code="throttled"
            )


class DashboardLoginView(LoginView):
    template_name = "dashboard/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True


@require_http_methods(["GET", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    """POST signs out (a GET that did so would let any page sign the user out); GET asks to confirm."""
    if request.method == "POST":
        logout(request)
        return redirect("dashboard:login")
    if not request.user.is_authenticated:
        return redirect("dashboard:login")
    return render(request, "dashboard/logout.html")

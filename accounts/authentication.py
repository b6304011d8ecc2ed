"""DRF authentication (placeholder until the accounts work lands)."""

from rest_framework import authentication


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):  # noqa: ANN001
        return None


class CachedBasicAuthentication(authentication.BasicAuthentication):
    pass


class SessionAuthentication(authentication.SessionAuthentication):
    pass

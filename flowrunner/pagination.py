"""List envelope `{count, next, previous, results}` with `?limit=&offset=`."""

from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

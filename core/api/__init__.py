"""The DRF pieces every app's API shares: the error envelope, pagination, parsers, serializers, view mixins."""

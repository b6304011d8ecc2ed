"""WebSocket routing (placeholder until the consumer lands)."""

from channels.routing import URLRouter

websocket_application = URLRouter([])

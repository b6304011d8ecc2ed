"""WebSocket routes: /api/v1/ws behind the handshake guard; any other path is refused before the upgrade."""

from channels.routing import URLRouter
from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from executions.consumers import ExecutionConsumer
from executions.ws_auth import WebsocketAuthStack

websocket_application = URLRouter(
    [
        path("api/v1/ws", WebsocketAuthStack(ExecutionConsumer.as_asgi())),
        re_path(r"", WebsocketDenier.as_asgi()),
    ]
)

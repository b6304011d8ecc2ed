"""ASGI entry point (daphne): HTTP goes to Django, WebSocket `/api/v1/ws` to the Channels consumer."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowrunner.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does before building its handler

from flowrunner.asgi_handler import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from executions.routing import websocket_application  # noqa: E402
from flowrunner import daphne_housekeeping  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application})
daphne_housekeeping.install()  # under daphne only: its per-second housekeeping without a scan of every socket

# A web process holds thousands of long-lived sockets of a few hundred objects each, and every full pass of the
# cyclic garbage collector walks all of them with the event loop stopped: hundreds of milliseconds per pass,
# seconds on a loaded machine, past daphne's 5 s handshake limit. What is loaded at start is never garbage, so
# it is left out of every pass; a full pass comes after ten times more young collections than by default (the
# interpreter still skips it until a quarter of the old objects are new).
gc.freeze()
gc.set_threshold(700, 10, 100)

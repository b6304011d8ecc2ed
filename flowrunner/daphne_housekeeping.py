"""daphne's connection housekeeping without a pause per scan: what changed is looked at, timeouts in slices."""

# daphne's `Server.application_checker` walks every connection each second to find the application instances
# that finished and the clients that left. With ten thousand idle WebSocket subscribers that walk holds the
# event loop for tens of milliseconds every second (83 % of the web process's CPU while nothing moved), and
# whatever arrives meanwhile waits for it. Here a connection is looked at only once its application finished or
# its client disconnected (and, while its application is still shutting down, every second after that), with
# daphne's own rules for each. The install is per process and idempotent, and only where daphne itself runs.
#
# daphne's `Server.timeout_checker` calls every connection's `check_timeouts` (its handshake and idle limits,
# a WebSocket's keep-alive ping) in one walk every 2 s: with ten thousand sockets the loop stopped for up to
# ~100-180 ms each time, and a ping answered behind it waited as long. Here the walk is cut into slices of
# the connections, one slice a tick, so that each connection is still checked about every 2 s.

from __future__ import annotations

import asyncio
import logging
import sys
import time
from concurrent.futures import CancelledError
from typing import Any

logger = logging.getLogger("daphne.server")  # daphne's own logger: the same messages, where they always went

# The series whose per-connection rules `_check` repeats.
DAPHNE_SERIES = "4."
_INSTALLED_ATTR = "_flowrunner_housekeeping"
_DUE_ATTR = "_flowrunner_due"
_ROUND_ATTR = "_flowrunner_timeout_round"
# daphne checks every connection's timeouts every TIMEOUT_PERIOD seconds; here 1/TIMEOUT_SLICES of them a tick.
TIMEOUT_PERIOD = 2.0
TIMEOUT_SLICES = 20


def install() -> bool:
    """Patch daphne's Server when daphne runs this process (its server module is loaded); False otherwise."""
    module = sys.modules.get("daphne.server")
    if module is None:
        return False  # another ASGI server: importing daphne.server would install Twisted's reactor
    if not getattr(sys.modules.get("daphne"), "__version__", "").startswith(DAPHNE_SERIES):
        return False  # the rules below are daphne 4's: another series keeps its own checker
    server_class = module.Server
    if getattr(server_class, _INSTALLED_ATTR, False):
        return True
    create_application = server_class.create_application
    protocol_disconnected = server_class.protocol_disconnected

    def create(self: Any, protocol: Any, scope: dict) -> Any:
        queue = create_application(self, protocol, scope)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None:
            instance.add_done_callback(lambda _: due(self).add(protocol))
        return queue

    def disconnected(self: Any, protocol: Any) -> None:
        protocol_disconnected(self, protocol)
        due(self).add(protocol)

    def checker(self: Any) -> None:
        try:
            check_due(self)
        finally:  # a pass that failed must not end the housekeeping for the rest of the process
            module.reactor.callLater(1, self.application_checker)

    def timeout_checker(self: Any) -> None:
        try:
            check_timeouts_slice(self)
        finally:
            module.reactor.callLater(TIMEOUT_PERIOD / TIMEOUT_SLICES, self.timeout_checker)

    server_class.create_application = create
    server_class.protocol_disconnected = disconnected
    server_class.application_checker = checker
    server_class.timeout_checker = timeout_checker
    setattr(server_class, _INSTALLED_ATTR, True)
    return True


def due(server: Any) -> set:
    """The connections to look at in the next pass."""
    pending = server.__dict__.get(_DUE_ATTR)
    if pending is None:
        pending = set()
        setattr(server, _DUE_ATTR, pending)
    return pending


def check_due(server: Any) -> None:
    """One pass over the connections that changed: daphne's checks, for those only. A client gone while its
    application still runs stays due, so that its close timeout is enforced in a later pass."""
    pending = due(server)
    batch = list(pending)
    pending.clear()
    for protocol in batch:
        details = server.connections.get(protocol)
        if details is None:
            continue
        try:
            again = _check(server, protocol, details)
        except Exception:
            logger.exception("Housekeeping of connection %s failed", repr(protocol))
            again = bool(details.get("disconnected"))  # its close timeout still applies
        if again:
            pending.add(protocol)


class _TimeoutRound:
    __slots__ = ("protocols", "position")

    def __init__(self, protocols: list[Any]) -> None:
        self.protocols, self.position = protocols, 0


def check_timeouts_slice(server: Any) -> None:
    """daphne's `check_timeouts` for the next slice of the connections present when this round began; a new
    round (connections since then included) once the last slice is done. One connection whose check fails is
    logged and the others are still checked."""
    current = server.__dict__.get(_ROUND_ATTR)
    if current is None or current.position >= len(current.protocols):
        current = _TimeoutRound(list(server.connections))
        setattr(server, _ROUND_ATTR, current)
    size = -(-len(current.protocols) // TIMEOUT_SLICES)  # ceil: a round never takes more than the slices
    batch = current.protocols[current.position : current.position + size]
    current.position += size
    for protocol in batch:
        if protocol not in server.connections:  # reaped since the round began
            continue
        try:
            protocol.check_timeouts()
        except Exception:
            logger.exception("Timeout check of connection %s failed", repr(protocol))


def _check(server: Any, protocol: Any, details: dict) -> bool:
    """daphne's per-connection rules; True when the connection must be looked at again."""
    disconnected = details.get("disconnected", None)
    instance = details.get("application_instance", None)
    if disconnected and time.time() - disconnected > server.application_close_timeout:
        if instance and not instance.done():
            logger.warning(
                "Application instance %r for connection %s took too long to shut down and was killed.",
                instance,
                repr(protocol),
            )
            instance.cancel()
    if instance and instance.done():
        try:
            exception = instance.exception()
        except (CancelledError, asyncio.CancelledError):
            pass
        else:
            if exception:
                if isinstance(exception, KeyboardInterrupt):
                    server.stop()  # the protocol asks the server to exit (in daphne's own tests)
                else:
                    logger.error("Exception inside application: %s", exception, exc_info=exception)
                    if not disconnected:
                        # e.g. an error page after the response started: the instance is reaped all the same
                        try:
                            protocol.handle_exception(exception)
                        except Exception:
                            logger.exception(
                                "Reporting the exception to connection %s failed", repr(protocol)
                            )
        del details["application_instance"]
        instance = None
    if not instance and disconnected:
        del server.connections[protocol]
        return False
    # Gone while its application still shuts down: again next pass (cancelled once past the close timeout).
    return bool(disconnected)

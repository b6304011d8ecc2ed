"""The benchmark's kernel-stamped receivers: messages whole and in order, arrival times between send and read."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from django.conf import settings
from websockets.asyncio.server import serve

from bench.stamped import StampedWebSocket, Unstamped
from bench.stamped_pubsub import StampedPubSub, _parse_resp


def test_stamped_parse_resp_waits_for_a_whole_reply_and_reads_nested_arrays():
    # Given a pub/sub message in RESP2, whole and cut anywhere
    message = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
    whole = message + b":1\r\n"
    # When it is parsed, whole or cut
    # Then a cut reply is incomplete, and the whole one parses up to where the next begins
    for cut in range(1, len(message)):
        assert _parse_resp(whole[:cut], 0) is None
    assert _parse_resp(whole, 0) == ([b"message", b"ch", b"hello"], len(message))
    assert _parse_resp(whole, len(message)) == (1, len(whole))


def test_stamped_websocket_reads_every_message_in_order_with_its_arrival_time():
    # Given a WebSocket server that sends 300 messages of growing size (some need 16- and 64-bit lengths)
    # and pings the client in between
    texts = [f"{n}:" + "x" * (n * 300) for n in range(300)]

    async def scenario() -> tuple[list[tuple[str, float, float]], float, float]:
        got: list[tuple[str, float, float]] = []
        pongs: list[float] = []

        async def server(ws):  # noqa: ANN001 - websockets' connection
            await ws.recv()
            for index, text in enumerate(texts):
                await ws.send(text)
                if index == 100:
                    pongs.append(await ws.ping())  # the client must answer it
            await pongs[0]
            await ws.close()

        async with serve(server, "127.0.0.1", 0, max_size=None) as srv:
            port = srv.sockets[0].getsockname()[1]
            before = time.time()
            ws = await StampedWebSocket.connect(f"ws://127.0.0.1:{port}/", {"X-Test": "1"})
            await ws.send("start")
            ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
            ws.handle(lambda text, arrival: got.append((text, arrival, time.time())), ended.set_result)
            # When the server has sent everything and closed
            error = await asyncio.wait_for(ended, 10)
            await ws.close()
            return got, before, time.time() if isinstance(error, ConnectionError) else -1.0

    unstamped = Unstamped.reads
    got, before, after = asyncio.run(scenario())
    # Then every message arrived whole and in order, each stamped after the client connected and no later
    # than it was read, and the close ended the stream with a ConnectionError
    assert [text for text, _, _ in got] == texts
    assert all(before <= arrival <= read for _, arrival, read in got)
    assert after > 0
    assert Unstamped.reads == unstamped  # every read had the kernel's time


def test_stamped_websocket_refuses_a_failed_handshake():
    # Given a server that refuses the upgrade
    async def scenario() -> None:
        async def reject(connection, request):  # noqa: ANN001 - websockets' types
            return connection.respond(403, "no")

        async with serve(lambda ws: None, "127.0.0.1", 0, process_request=reject) as srv:
            port = srv.sockets[0].getsockname()[1]
            await StampedWebSocket.connect(f"ws://127.0.0.1:{port}/", {}, timeout=5)

    # When a client connects
    # Then connecting raises the handshake's error (which the bench retries, as a client would)
    with pytest.raises(Exception, match="403"):
        asyncio.run(scenario())


def test_stamped_pubsub_receives_published_messages_with_their_arrival_time():
    # Given a subscriber on a channel of its own
    channel = f"test:stamped:{time.time_ns()}"
    client = redis.Redis.from_url(settings.REDIS_URL)

    async def scenario() -> list[tuple[bytes, float, float]]:
        sub = await StampedPubSub.subscribe(settings.REDIS_URL, channel, timeout=5)
        got: list[tuple[bytes, float, float]] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_message(data: bytes, arrival: float) -> None:
            got.append((data, arrival, time.time()))
            if len(got) == 50 and not done.done():
                done.set_result(None)

        sub.handle(on_message, lambda error: done.done() or done.set_exception(error))
        # When 50 messages are published, one of them 100 KB
        for n in range(50):
            await asyncio.to_thread(
                client.publish, channel, f"{n}:{time.time()}:" + "y" * (100_000 if n == 7 else 0)
            )
        await asyncio.wait_for(done, 10)
        sub.close()
        return got

    unstamped = Unstamped.reads
    try:
        got = asyncio.run(scenario())
    finally:
        client.close()
    # Then each arrived once, in order, stamped after it was sent and no later than it was read
    assert [int(data.split(b":")[0]) for data, _, _ in got] == list(range(50))
    for data, arrival, read in got:
        sent = float(data.split(b":")[1])
        assert sent <= arrival <= read
    assert Unstamped.reads == unstamped  # every read had the kernel's time

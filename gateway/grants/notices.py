"""With scale-out Redis (`workload.redis`): a replica that records an access request event publishes a
notice, and every replica reads the store at once instead of at its next poll. Best effort: a lost notice
(Redis down) only means the poll (`access_requests.poll_seconds`) catches the change instead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis import asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("gateway.access_requests")

TIMEOUT_SECONDS = 0.5
RETRY_SECONDS = 2.0


class RedisNotices:
    def __init__(self, *, url: str, channel: str) -> None:
        self.channel = channel
        self._redis = aioredis.from_url(url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)
        self._listener: asyncio.Task[None] | None = None

    def start(self, on_notice: Callable[[], Awaitable[None]]) -> None:
        self._listener = asyncio.create_task(self._listen(on_notice), name="access-requests-notices")

    async def publish(self) -> None:
        try:
            await self._redis.publish(self.channel, b"1")
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("access request notice not published (other replicas see it at their next poll): %s",
                        error)

    async def _listen(self, on_notice: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    while True:  # a read timeout on an idle channel is no failure: wait again
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and message.get("type") == "message":
                            await on_notice()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as error:
                log.warning("access request notices unavailable, polling only: %s", error)
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:  # refresh failed (store down): the poll keeps trying
                log.exception("access request notice not applied")
                await asyncio.sleep(RETRY_SECONDS)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self._redis.aclose()

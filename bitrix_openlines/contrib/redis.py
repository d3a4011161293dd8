"""The portal's limits and OAuth refresh shared through Redis (extra ``redis``).

The portal's leaky bucket and its single-use refresh tokens belong to the portal, not to
a process: a job split across workers, or a web app on several hosts, must share them.

- :class:`RedisRateLimiter` is the :class:`~bitrix_openlines.ratelimit.LeakyBucketLimiter`'s GCRA
  run as one atomic Lua script per reservation, keyed per portal, on **Redis's clock**
  (``TIME``): the script returns how long to wait, and each host only sleeps that long,
  so the hosts' clocks do not matter. Reservations are first come, first served across
  every process.
- :class:`RedisTokenStore` keeps each portal's pair in Redis and makes the refresh
  single-flight across processes: a lock with a lease (``SET NX PX``), so that a crashed
  holder blocks the others for at most ``lease`` seconds, and a fencing check: the new
  pair is written only if this process still holds the lock, so a holder whose lease ran
  out can never overwrite a newer pair. A waiter that gets the lock after someone else's
  refresh finds the new pair and uses it instead of refreshing again.

When Redis cannot be reached, both raise :class:`RedisUnavailableError`; the limiter can
instead fall back, explicitly (``fallback=``), to a local limiter, and then logs it and
starts that limiter from a full bucket: never a silent burst.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

try:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] != "redis":
        raise
    raise ModuleNotFoundError(
        "bitrix_openlines.contrib.redis needs the redis package, an optional extra: "
        'pip install "bitrix-openlines[redis]"',
        name=exc.name,
    ) from None

from bitrix_openlines.auth import OAuthTokens, TokenStore
from bitrix_openlines.errors import LockLostError, RedisUnavailableError
from bitrix_openlines.ratelimit import Limiter, RateLimit, Sleep

__all__ = [
    "LockLostError",
    "RedisRateLimiter",
    "RedisTokenStore",
    "RedisUnavailableError",
]

logger = logging.getLogger("bitrix_openlines")


# GCRA in microseconds on Redis's clock. KEYS[1]: the bucket. ARGV: interval, tolerance,
# cost, mode ("acquire", "penalize" or "release": give back cost slots of a reservation
# that was never used), the usable bucket in microseconds.
_BUCKET_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local interval = tonumber(ARGV[1])
local new_tat
local wait = 0
if ARGV[4] == 'penalize' then
  new_tat = math.max(tat, now + tonumber(ARGV[5]))
elseif ARGV[4] == 'release' then
  new_tat = math.max(now, tat - tonumber(ARGV[3]) * interval)
else
  local cost = tonumber(ARGV[3])
  local send_at = math.max(now, tat + (cost - 1) * interval - tonumber(ARGV[2]))
  new_tat = math.max(tat, send_at) + cost * interval
  wait = send_at - now
end
local ttl = math.floor((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return wait
"""

# Write the pair only while holding the lock. KEYS: lock, pair. ARGV: lock token, pair.
_FENCED_SAVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# Release the lock only if it is still ours. KEYS: lock. ARGV: lock token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisRateLimiter(Limiter):
    """The portal's leaky bucket shared by every process through Redis.

    Args:
        redis: A ``redis.asyncio.Redis`` client (its lifecycle is the caller's).
        rate_limit: The portal's bucket (``RateLimit.standard()`` by default).
        prefix: The prefix of the bucket keys (one key per portal).
        fallback: A local limiter to use while Redis is unreachable, or ``None`` to
            raise :class:`RedisUnavailableError` instead. A fallback should get a share
            of the rate (``rate / processes``): every process falls back at once.
        sleep: The coroutine used to wait the seconds the script hands back
            (``asyncio.sleep``; injectable, so a test can record the waits instead of
            sleeping). The waits come from Redis's clock, so there is no clock to inject.
    """

    def __init__(
        self,
        redis: Redis,
        rate_limit: RateLimit | None = None,
        *,
        prefix: str = "bitrix_openlines:bucket:",
        fallback: Limiter | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if fallback is not None and not isinstance(fallback, Limiter):
            raise TypeError(f"fallback must be a Limiter, got {type(fallback).__name__}")
        self._redis = redis
        self.rate_limit = rate_limit or RateLimit.standard()
        self._prefix = prefix
        self._fallback = fallback
        self._sleep = sleep
        self._falling_back: set[str] = set()
        interval = 1_000_000 / self.rate_limit.requests_per_second
        self._interval_us = round(interval)
        self._tolerance_us = round((self.rate_limit.usable_burst - 1) * interval)
        self._full_us = round(self.rate_limit.usable_burst * interval)
        self._script = redis.register_script(_BUCKET_SCRIPT)

    async def _run(self, portal: str, mode: str, cost: int) -> float | None:
        try:
            waited = await self._script(
                keys=[self._prefix + portal],
                args=[self._interval_us, self._tolerance_us, cost, mode, self._full_us],
            )
        except (RedisError, OSError) as exc:
            if self._fallback is None:
                raise RedisUnavailableError(
                    f"the shared rate limiter cannot reach Redis ({type(exc).__name__}); "
                    "no request was sent"
                ) from None
            if portal not in self._falling_back:
                self._falling_back.add(portal)
                logger.warning(
                    "Redis unreachable (%s): limiting %s locally, from a full bucket",
                    type(exc).__name__,
                    portal,
                )
                await self._fallback.penalize(portal)
            return None
        if portal in self._falling_back:
            self._falling_back.discard(portal)
            logger.warning("Redis reachable again: limiting %s through Redis", portal)
        return int(waited) / 1_000_000

    async def acquire(self, portal: str, cost: int = 1) -> None:
        """Reserve the next slot of ``portal``'s shared bucket and wait for it.

        A wait that is cancelled gives its slots back to the shared bucket.
        """
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError(f"cost must be a positive integer, got {cost!r}")
        if cost > self.rate_limit.usable_burst:
            raise ValueError(
                f"cost {cost} exceeds the usable bucket size {self.rate_limit.usable_burst}"
            )
        wait = await self._run(portal, "acquire", cost)
        if wait is None:
            assert self._fallback is not None
            await self._fallback.acquire(portal, cost)
        elif wait > 0:
            try:
                await self._sleep(wait)
            except BaseException:
                # Cancelled while waiting: give the slots back to the shared bucket.
                await asyncio.shield(self._release(portal, cost))
                raise

    async def _release(self, portal: str, cost: int) -> None:
        try:
            await self._run(portal, "release", cost)
        except RedisUnavailableError:
            logger.warning("could not give a cancelled slot back to Redis (unreachable)")

    async def penalize(self, portal: str) -> None:
        """Mark ``portal``'s shared bucket full (the portal answered 503)."""
        if await self._run(portal, "penalize", 1) is None:
            assert self._fallback is not None
            await self._fallback.penalize(portal)


# The locks this task holds: store id -> {key: lock token}. A context variable, so that
# only the task that took the lock (and the tasks it starts) write with its fence.
_held: contextvars.ContextVar[dict[tuple[int, str], str]] = contextvars.ContextVar(
    "bitrix_openlines_redis_locks"
)


class RedisTokenStore(TokenStore):
    """Token pairs in Redis, with a refresh lock shared by every process.

    Args:
        redis: A ``redis.asyncio.Redis`` client (its lifecycle is the caller's).
        prefix: The prefix of the keys (``<prefix><key>`` holds the pair as JSON,
            ``<prefix><key>:app`` the portal's ``application_token``,
            ``<prefix><key>:lock`` the lock).
        lease: Seconds a lock holder may keep the lock; a crashed holder blocks the others
            for at most this long. Longer than a refresh can take.
        wait_timeout: Seconds to wait for the lock before giving up.
        poll: Seconds between tries for a held lock.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "bitrix_openlines:tokens:",
        lease: float = 60.0,
        wait_timeout: float = 120.0,
        poll: float = 0.05,
    ) -> None:
        for name, value in (("lease", lease), ("wait_timeout", wait_timeout), ("poll", poll)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self._redis = redis
        self._prefix = prefix
        self._lease_ms = max(1, round(lease * 1000))
        self._wait_timeout = float(wait_timeout)
        self._poll = float(poll)
        self._fenced_save = redis.register_script(_FENCED_SAVE)
        self._release = redis.register_script(_RELEASE)

    async def load(self, key: str) -> OAuthTokens | None:
        """Return the pair stored under ``key``, or ``None``."""
        try:
            raw = await self._redis.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc, "load the tokens") from None
        if raw is None:
            return None
        try:
            return OAuthTokens.from_response(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise RedisUnavailableError(
                f"the stored pair under {key!r} is unreadable: {exc}"
            ) from None

    async def save(self, key: str, tokens: OAuthTokens) -> None:
        """Store ``tokens`` under ``key``; inside :meth:`lock`, only while the lock holds.

        Raises:
            LockLostError: The lock's lease ran out (another process may hold it now).
        """
        body = json.dumps(tokens.to_response())
        token = _held.get({}).get((id(self), key))
        try:
            if token is None:
                await self._redis.set(self._prefix + key, body)
                return
            saved = await self._fenced_save(
                keys=[self._prefix + key + ":lock", self._prefix + key], args=[token, body]
            )
        except (RedisError, OSError) as exc:
            raise _unavailable(exc, "save the tokens") from None
        if not int(saved):
            raise LockLostError(
                f"the refresh lock of {key!r} expired before the new pair was saved; "
                "it was not saved (raise RedisTokenStore's lease)"
            )

    async def load_app_token(self, key: str) -> str | None:
        """Return the ``application_token`` stored under ``key``, or ``None``."""
        try:
            raw = await self._redis.get(self._prefix + key + ":app")
        except (RedisError, OSError) as exc:
            raise _unavailable(exc, "load the application token") from None
        if raw is None:
            return None
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    async def save_app_token(self, key: str, application_token: str) -> None:
        """Store the portal's ``application_token`` under ``key``."""
        if not isinstance(application_token, str) or not application_token:
            raise ValueError("application_token must be a non-empty string")
        try:
            await self._redis.set(self._prefix + key + ":app", application_token)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc, "save the application token") from None

    async def delete(self, key: str) -> None:
        """Remove the pair, the application token and the lock under ``key`` at once.

        A refresh still holding the lock elsewhere then fails to save its pair
        (``LockLostError``): the portal uninstalled the application, its tokens are dead.
        """
        base = self._prefix + key
        try:
            await self._redis.delete(base, base + ":app", base + ":lock")
        except (RedisError, OSError) as exc:
            raise _unavailable(exc, "delete the portal's state") from None

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s refresh lock, across processes (see the class)."""
        lock_key = self._prefix + key + ":lock"
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_timeout
        try:
            while not await self._redis.set(lock_key, token, nx=True, px=self._lease_ms):
                if loop.time() >= deadline:
                    raise RedisUnavailableError(
                        f"gave up waiting {self._wait_timeout:g}s for the refresh lock of {key!r}"
                    )
                await asyncio.sleep(self._poll)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc, "take the refresh lock") from None
        held = dict(_held.get({}))
        held[(id(self), key)] = token
        reset = _held.set(held)
        try:
            yield
        finally:
            _held.reset(reset)
            try:
                await self._release(keys=[lock_key], args=[token])
            except (RedisError, OSError):
                # The lease frees it anyway.
                logger.warning("could not release the refresh lock of %r; its lease will", key)

    def __repr__(self) -> str:
        return f"RedisTokenStore(prefix={self._prefix!r})"


def _unavailable(exc: BaseException, what: str) -> RedisUnavailableError:
    return RedisUnavailableError(f"could not {what}: Redis failed ({type(exc).__name__})")

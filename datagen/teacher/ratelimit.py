"""Request/token rate limiting and adaptive concurrency for the teacher client (DESIGN §3).

Two independent mechanisms, both pure (no HTTP) and driven by an injectable clock and sleep so
tests can simulate minutes of traffic in milliseconds:

* `RateLimiter` keeps the client under the endpoint's RPM/TPM *before* it gets a 429. It uses a
  sliding-window log, not a token bucket: a bucket of capacity L refilling at L per period admits
  up to 2L in one period-long window (a full bucket spent at the end of one minute plus the refill
  spent at the start of the next), which is exactly the burst that earns 429s. The log admits a
  request at time t only if the requests/tokens recorded in (t - period, t] plus this one stay
  within the limit; for any window [s, s + period) the last start t in it sees every other start
  of that window inside (t - period, t], so *every* sliding window honours the limit (proved
  empirically in tests/test_ratelimit.py). Throughput still reaches the limit: nothing is held
  back once entries age out. A window full of requests is also admissible for a provider's
  continuously-refilling bucket of the same size, so we never outrun one.
* `AdaptiveConcurrency` reacts *after* the fact: AIMD on the number of requests in flight
  (halve once per congestion epoch on 429, +1 per round trip on success) plus a global pause for
  Retry-After, so one 429 makes the whole client back off rather than one coroutine.

Both are meant for a single asyncio event loop (the teacher's); they are not thread-safe.
"""
from __future__ import annotations

import asyncio
import contextvars
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

# Upper bound on a reset duration we will honour: a day-long limit resets in < 24 h. Larger values
# are almost certainly a Unix timestamp sent by a non-OpenAI server; waiting that out would hang.
_MAX_RESET_S = 2 * 86400.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|μs|ns)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}


def parse_duration(text: str | None) -> float | None:
    """Seconds in an OpenAI reset header: Go-style durations ("1s", "6m0s", "20ms", "1h2m3.5s")
    or a bare number of seconds ("1.5", as some compatible servers send). None when unparseable,
    negative, or implausibly long (see `_MAX_RESET_S`), so a bad header can never hang the client."""
    if text is None:
        return None
    s = text.strip().lower()
    if not s:
        return None
    try:
        value = float(s)
    except ValueError:
        pos, value = 0, 0.0
        for m in _DURATION_PART.finditer(s):
            if m.start() != pos:
                return None
            value += float(m.group(1)) * _UNIT_S[m.group(2)]
            pos = m.end()
        if pos != len(s) or pos == 0:
            return None
    if not math.isfinite(value) or value < 0 or value > _MAX_RESET_S:
        return None
    return value


def _parse_count(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass(eq=False)
class Reservation:
    """One admitted request in the sliding-window log: when it started and how many tokens it
    holds. Returned by `RateLimiter.acquire` so `reconcile` corrects exactly this entry."""

    started_at: float
    tokens: int
    reserved: int
    live: bool = True          # still inside the window (its tokens count against the limit)
    reconciled: bool = False


@dataclass
class _ServerQuota:
    """What the server last said is left before its window resets. Kept pessimistic: responses
    arrive out of order (a long generation admitted early reports an older, larger `remaining`),
    so a larger figure never replaces a smaller one before the smaller one's reset; our own starts
    since the snapshot are subtracted so "remaining hits 0" is predicted, not waited for."""

    remaining: float | None = None
    reset_at: float = -math.inf

    def update(self, remaining: float | None, reset_s: float | None, now: float) -> None:
        if remaining is None:
            return
        active = self.remaining is not None and now < self.reset_at
        if active and remaining > self.remaining:
            return
        self.remaining = remaining
        # No reset header: trust the figure only briefly rather than hold indefinitely.
        self.reset_at = now + (reset_s if reset_s is not None else 1.0)

    def hold_until(self, need: float, now: float) -> float | None:
        """Deadline to wait for when `need` units exceed what is left, else None."""
        if self.remaining is None or now >= self.reset_at:
            return None
        return self.reset_at if need > self.remaining else None

    def spend(self, amount: float, now: float) -> None:
        if self.remaining is not None and now < self.reset_at:
            self.remaining -= amount


@dataclass(eq=False)
class RateLimiter:
    """Requests-per-period and tokens-per-period limiter over a sliding-window log.

    Guarantee: in any window of `period_s` (half-open, [s, s + period_s)) at most `rpm` requests
    start and at most `tpm` tokens are reserved, where a reservation's size is its latest value
    (the acquire-time estimate, or the `reconcile`d figure when that is lower). A reconciled figure
    *higher* than the estimate (tiktoken undercounting a foreign tokenizer) is charged to the same
    entry, so it delays later starts, but it cannot be un-started: the window that already holds it
    may then exceed `tpm` by that estimation error.

    A request larger than `tpm` could never fit; rather than deadlock it is admitted *alone* (when
    the window holds no tokens) and then blocks others until it ages out. Its window exceeds `tpm`
    by construction; the server will probably reject it, which is the honest outcome.

    Limits: the configured `rpm`/`tpm` (None = unlimited) combined with limits learned from
    response headers (`update_from_headers`) — the smaller wins, since the server is authoritative
    and a lower configured figure is a deliberate choice (e.g. sharing a quota). Header limits are
    read as per `period_s`. Waiters are served first come, first served, so a large request is not
    starved by a stream of small ones.
    """

    rpm: float | None = None
    tpm: float | None = None
    period_s: float = 60.0
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    _log: deque = field(default_factory=deque, init=False, repr=False)
    _window_tokens: int = field(default=0, init=False, repr=False)
    _header_rpm: float | None = field(default=None, init=False, repr=False)
    _header_tpm: float | None = field(default=None, init=False, repr=False)
    _srv_requests: _ServerQuota = field(default_factory=_ServerQuota, init=False, repr=False)
    _srv_tokens: _ServerQuota = field(default_factory=_ServerQuota, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)
    _wake: asyncio.Future | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            v = getattr(self, name)
            if v is not None and not v >= 1:
                raise ValueError(f"{name}: must be at least 1 (or None for no limit), got {v}")
        if not self.period_s > 0:
            raise ValueError(f"period_s: must be positive, got {self.period_s}")

    # -- effective limits ------------------------------------------------------------------------
    @property
    def request_limit(self) -> int | None:
        """Requests admitted per window: configured and header limits, the smaller, floored."""
        return _combine(self.rpm, self._header_rpm)

    @property
    def token_limit(self) -> int | None:
        return _combine(self.tpm, self._header_tpm)

    @property
    def requests_in_window(self) -> int:
        self._prune(self.clock())
        return len(self._log)

    @property
    def tokens_in_window(self) -> int:
        self._prune(self.clock())
        return self._window_tokens

    # -- core ------------------------------------------------------------------------------------
    @property
    def _horizon(self) -> float:
        # How long an entry stays in the window: the period plus a nanosecond-scale margin, so
        # float rounding can never let an entry leave early (t + 60 <= now and t <= now - 60 can
        # disagree in the last bit). The expiry test `started_at + horizon <= now` is the same
        # expression as the wake-up time in `_wait_time`, so a sleeper woken then finds it gone.
        return self.period_s * (1 + 1e-9)

    def _prune(self, now: float) -> None:
        log, period = self._log, self._horizon
        while log and log[0].started_at + period <= now:
            entry = log.popleft()
            entry.live = False
            self._window_tokens -= entry.tokens

    def _wait_time(self, tokens: int, now: float) -> float:
        """Seconds until a request of `tokens` may start (0 = now). Pure given the state."""
        self._prune(now)
        deadline = now
        rlimit, tlimit = self.request_limit, self.token_limit
        # Entries that must age out: enough to free a request slot and enough tokens. A request
        # bigger than the token limit needs a window holding no tokens at all.
        need_requests = 0 if rlimit is None else max(0, len(self._log) + 1 - rlimit)
        if tlimit is None:
            excess = 0
        elif tokens > tlimit:
            excess = self._window_tokens
        else:
            excess = self._window_tokens + tokens - tlimit
        if need_requests > 0 or excess > 0:
            freed_requests = freed_tokens = 0
            for entry in self._log:
                freed_requests += 1
                freed_tokens += entry.tokens
                if freed_requests >= need_requests and freed_tokens >= excess:
                    deadline = entry.started_at + self._horizon
                    break
            else:  # cannot happen: freeing every entry empties the window
                deadline = self._log[-1].started_at + self._horizon
        for quota, need in ((self._srv_requests, 1), (self._srv_tokens, tokens)):
            held = quota.hold_until(need, now) if need > 0 else None
            if held is not None:
                deadline = max(deadline, held)
        return max(0.0, deadline - now)

    def try_acquire(self, tokens: int = 0) -> Reservation | float:
        """Admit now and return the `Reservation`, or return the seconds to wait. Synchronous
        building block of `acquire`; does not respect the queue of async waiters."""
        if tokens < 0:
            raise ValueError(f"tokens: must be >= 0, got {tokens}")
        now = self.clock()
        wait = self._wait_time(tokens, now)
        if wait > 0:
            return wait
        res = Reservation(started_at=now, tokens=tokens, reserved=tokens)
        self._log.append(res)
        self._window_tokens += tokens
        self._srv_requests.spend(1, now)
        self._srv_tokens.spend(tokens, now)
        return res

    async def acquire(self, tokens: int = 0) -> Reservation:
        """Wait until a request of `tokens` (estimated input + max_tokens) may start; record it.

        One waiter at a time evaluates (FIFO via the lock); it sleeps until the computed time or
        until `reconcile`/`update_from_headers` changes the picture, whichever comes first."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                self._wake = None
                got = self.try_acquire(tokens)
                if isinstance(got, Reservation):
                    return got
                await self._nap(got)

    async def _nap(self, delay: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        self._wake = wake
        sleeper = asyncio.ensure_future(self.sleep(delay))
        try:
            await asyncio.wait({sleeper, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sleeper.done():
                sleeper.cancel()
            self._wake = None

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def reconcile(self, reserved: Reservation | int, actual: int) -> None:
        """Replace a reservation's estimate by the tokens the response's usage reports.

        Pass the `Reservation` from `acquire`. A bare int (the reserved amount) is accepted too:
        it corrects the newest unreconciled live entry of that size — equal-sized entries are
        interchangeable for the window sums except for their age, so the guarantee still holds.
        An entry that already left the window is not charged again: its window is over."""
        if actual < 0:
            raise ValueError(f"actual: must be >= 0, got {actual}")
        self._prune(self.clock())
        if isinstance(reserved, Reservation):
            entry = reserved
        else:
            entry = next((e for e in reversed(self._log) if not e.reconciled and e.reserved == reserved), None)
            if entry is None:
                return
        entry.reconciled = True
        if entry.live:
            self._window_tokens += actual - entry.tokens
            entry.tokens = actual
            if actual < entry.reserved:
                self._notify()
        else:
            entry.tokens = actual

    def update_from_headers(self, headers: Mapping[str, str]) -> None:
        """Adopt OpenAI-style `x-ratelimit-*` headers from a response (any status, 429 included).

        `limit-*` become the discovered limits (combined with the configured ones: smaller wins);
        `remaining-*` with `reset-*` become a server quota: a request needing more than what is
        left waits for the reset — "remaining hits 0, hold until reset"."""
        h = {k.lower(): v for k, v in headers.items()}
        now = self.clock()
        lr = _parse_count(h.get("x-ratelimit-limit-requests"))
        lt = _parse_count(h.get("x-ratelimit-limit-tokens"))
        if lr is not None and lr >= 1:
            self._header_rpm = lr
        if lt is not None and lt >= 1:
            self._header_tpm = lt
        self._srv_requests.update(_parse_count(h.get("x-ratelimit-remaining-requests")),
                                  parse_duration(h.get("x-ratelimit-reset-requests")), now)
        self._srv_tokens.update(_parse_count(h.get("x-ratelimit-remaining-tokens")),
                                parse_duration(h.get("x-ratelimit-reset-tokens")), now)
        self._notify()


def _combine(configured: float | None, discovered: float | None) -> int | None:
    values = [v for v in (configured, discovered) if v is not None]
    return max(1, math.floor(min(values))) if values else None


# -- adaptive concurrency --------------------------------------------------------------------------

_current_slot: contextvars.ContextVar[int | None] = contextvars.ContextVar("datagen_concurrency_slot",
                                                                           default=None)


class AdaptiveConcurrency:
    """AIMD limit on requests in flight, plus a global Retry-After pause.

    Why AIMD: a fixed --max-concurrency either underuses a fast endpoint or hammers a slow one;
    halving on 429 and creeping back by one per round trip converges on what the server sustains,
    like TCP congestion control. `maximum` (the configured --max-concurrency) and `minimum` bound it.

    Congestion epochs: requests are numbered as they start. A 429 halves the limit only if its
    request started after the previous halving; the other 429s of that burst were already in
    flight when we reacted, so they carry no new information. The request number is taken from
    the argument, else from the current task's context (set by `acquire`, hence automatic inside
    `async with limiter:`), else approximated as the oldest request that may still be in flight.

    Additive increase: +`increase`/limit per success, i.e. +`increase` after a limit's worth of
    successes (about one round trip), up to `maximum`, and only while the limit is in use (the
    most requests ever in flight at once is within one of it): an application-limited client
    proves nothing about what the server can take, and an inflated limit would burst later.

    `pause_until`/`pause_for` make every *new* acquire wait (requests in flight are unaffected), so
    a Retry-After makes the whole client back off. Single event loop; not thread-safe.
    """

    def __init__(self, initial: int, minimum: int = 1, maximum: int | None = None, decrease: float = 0.5,
                 increase: float = 1.0, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        if minimum < 1:
            raise ValueError(f"minimum: must be at least 1, got {minimum}")
        if maximum is not None and maximum < minimum:
            raise ValueError(f"maximum ({maximum}) is below minimum ({minimum})")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease: must be in (0, 1), got {decrease}")
        if not increase > 0:
            raise ValueError(f"increase: must be positive, got {increase}")
        self.minimum, self.maximum = minimum, maximum
        self.decrease, self.increase = decrease, increase
        self.clock, self.sleep = clock, sleep
        self._limit = float(self._clamp(initial))
        self._in_flight = 0
        self._peak = 0             # most requests ever in flight at once
        self._started = 0          # requests numbered 0, 1, 2, ... as they acquire
        self._epoch_start = 0      # first request number of the current congestion epoch
        self._paused_until = -math.inf
        self._waiters: deque[asyncio.Future] = deque()
        self.decreases = 0         # how many times the limit was cut (for progress/manifests)

    def _clamp(self, value: float) -> float:
        value = max(float(self.minimum), value)
        return min(float(self.maximum), value) if self.maximum is not None else value

    @property
    def limit(self) -> int:
        return max(self.minimum, math.floor(self._limit + 1e-9))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def paused_until(self) -> float | None:
        return self._paused_until if self._paused_until > self.clock() else None

    # -- slots -----------------------------------------------------------------------------------
    async def acquire(self) -> int:
        """Wait for the pause to end and a free slot; return this request's number."""
        woken = False
        while True:
            await self.wait_pause()
            if self._in_flight < self.limit and (woken or not self._waiters):
                break
            fut = asyncio.get_running_loop().create_future()
            # A woken waiter that lost its slot to a newcomer keeps its place at the head.
            (self._waiters.appendleft if woken else self._waiters.append)(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake_waiters()      # we were handed a slot: pass it on
                else:
                    try:
                        self._waiters.remove(fut)
                    except ValueError:
                        pass
                raise
            woken = True
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        slot = self._started
        self._started += 1
        _current_slot.set(slot)
        return slot

    def release(self) -> None:
        if self._in_flight <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self._in_flight -= 1
        _current_slot.set(None)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        free = self.limit - self._in_flight
        while free > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1

    async def __aenter__(self) -> int:
        return await self.acquire()

    async def __aexit__(self, *exc) -> None:
        self.release()

    # -- feedback --------------------------------------------------------------------------------
    def on_rate_limited(self, slot: int | None = None) -> bool:
        """A 429 (or similar overload signal). Multiplicative decrease, once per congestion epoch.
        Returns whether the limit was cut."""
        if slot is None:
            slot = _current_slot.get()
        if slot is None:
            slot = self._started - self._in_flight
        if slot < self._epoch_start:
            return False
        self._limit = self._clamp(self._limit * self.decrease)
        self._epoch_start = self._started
        self.decreases += 1
        return True

    def on_success(self) -> None:
        """A completed request: additive increase while the limit is in use, i.e. the most
        requests ever in flight at once is within one of it, so the limit stays below peak + 2.
        (Judged on the peak, not on the in-flight count now: successes arrive in batches, each
        draining in-flight before the next is reported; and a slot added by growth only fills
        after the batch that earned it.)"""
        if self._peak + 1 < self.limit:
            return
        before = self.limit
        self._limit = self._clamp(self._limit + self.increase / max(self._limit, 1.0))
        if self.limit > before:
            self._wake_waiters()

    # -- global pause ----------------------------------------------------------------------------
    def pause_until(self, deadline: float) -> None:
        """Make new acquires wait until `deadline` (on `clock`). Pauses only ever extend."""
        self._paused_until = max(self._paused_until, deadline)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self.clock() + max(0.0, seconds))

    async def wait_pause(self) -> None:
        """Return once no pause is active; loops because a pause may be extended while we sleep."""
        while True:
            remaining = self._paused_until - self.clock()
            if remaining <= 0:
                return
            await self.sleep(remaining)

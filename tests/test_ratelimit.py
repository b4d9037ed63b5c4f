"""RateLimiter and AdaptiveConcurrency against simulated minutes of traffic.

`VirtualTime` replaces the clock and sleep: time stands still while any coroutine can run and jumps
to the earliest pending sleep once all are blocked, so five simulated minutes take milliseconds
and a deadlock is reported instead of hanging.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import random

import pytest

from datagen.teacher.ratelimit import AdaptiveConcurrency, RateLimiter, Reservation, parse_duration

PERIOD = 60.0


class Deadlock(Exception):
    pass


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + max(0.0, delay), next(self._seq), fut))
        await fut

    async def _settle(self) -> None:
        """Yield until no other callback is ready to run. Peeks at the loop's ready queue (a
        private detail of asyncio's base loop); without it, falls back to many plain yields."""
        ready = getattr(asyncio.get_running_loop(), "_ready", None)
        if ready is None:
            for _ in range(2000):
                await asyncio.sleep(0)
            return
        idle = 0
        while idle < 2:
            await asyncio.sleep(0)
            idle = idle + 1 if not ready else 0

    def run(self, coro, until: float | None = None):
        """Run `coro` under virtual time; with `until`, stop it once the clock would pass it."""
        async def main():
            task = asyncio.ensure_future(coro)
            while True:
                await self._settle()
                if task.done():
                    return task.result()
                while self._heap and self._heap[0][2].done():
                    heapq.heappop(self._heap)       # cancelled sleeps
                if not self._heap:
                    task.cancel()
                    raise Deadlock(f"every coroutine is blocked at t={self.now}")
                when = self._heap[0][0]
                if until is not None and when >= until:
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
                    return None
                self.now = max(self.now, when)
                while self._heap and self._heap[0][0] <= self.now:
                    _, _, fut = heapq.heappop(self._heap)
                    if not fut.done():
                        fut.set_result(None)
        return asyncio.run(main())


def max_in_window(events: list[tuple[float, int]], period: float = PERIOD) -> int:
    """Largest sum of weights over any half-open window [s, s + period). Checking windows that
    start at an event suffices: sliding a window's start forward to its first event loses nothing."""
    events = sorted(events)
    best, total, j = 0, 0, 0
    for i, (t, w) in enumerate(events):
        total += w
        while events[j][0] <= t - period:
            total -= events[j][1]
            j += 1
        best = max(best, total)
    return best


# -- durations and headers ---------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0s", 0.0), ("2m59.56s", 179.56),
    ("500us", 0.0005), ("1.5", 1.5), ("7", 7.0), (" 3s ", 3.0), ("1m30s", 90.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "1x", "s", "-1s", "1s garbage", "-3", "1715000000"])
def test_parse_duration_rejects(text):
    assert parse_duration(text) is None


def test_limits_discovered_from_headers_when_not_configured():
    vt = VirtualTime()
    rl = RateLimiter(None, None, clock=vt.clock, sleep=vt.sleep)
    assert rl.request_limit is None and rl.token_limit is None
    rl.update_from_headers({"X-RateLimit-Limit-Requests": "500", "x-ratelimit-limit-tokens": "30000"})
    assert rl.request_limit == 500 and rl.token_limit == 30000
    # A configured limit stays when it is the stricter one; a stricter server limit wins otherwise.
    rl2 = RateLimiter(100, 50_000, clock=vt.clock, sleep=vt.sleep)
    rl2.update_from_headers({"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "30000"})
    assert rl2.request_limit == 100 and rl2.token_limit == 30000


def test_discovered_limit_is_enforced_over_the_window():
    vt = VirtualTime()
    rl = RateLimiter(None, None, clock=vt.clock, sleep=vt.sleep)
    starts = []

    async def go():
        rl.update_from_headers({"x-ratelimit-limit-requests": "3"})
        for _ in range(7):
            await rl.acquire()
            starts.append(vt.now)

    vt.run(go())
    assert starts == pytest.approx([0, 0, 0, 60, 60, 60, 120])


def test_remaining_requests_zero_holds_until_reset():
    vt = VirtualTime()
    rl = RateLimiter(None, None, clock=vt.clock, sleep=vt.sleep)
    starts = []

    async def go():
        await rl.acquire()
        vt.now = 1.0
        rl.update_from_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"})
        await rl.acquire()
        starts.append(vt.now)

    vt.run(go())
    assert starts == [361.0]


def test_remaining_requests_is_counted_down_locally():
    """remaining=2: two more may start now, the third waits for the reset (we predict the 0)."""
    vt = VirtualTime()
    rl = RateLimiter(None, None, clock=vt.clock, sleep=vt.sleep)
    starts = []

    async def go():
        rl.update_from_headers({"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "1.5s"})
        for _ in range(3):
            await rl.acquire()
            starts.append(vt.now)

    vt.run(go())
    assert starts == [0, 0, 1.5]


def test_remaining_tokens_hold_and_stale_larger_figure_ignored():
    vt = VirtualTime()
    rl = RateLimiter(None, None, clock=vt.clock, sleep=vt.sleep)
    starts = {}

    async def go():
        rl.update_from_headers({"x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "20ms"})
        # A late response admitted earlier reports more room: it must not lift the hold.
        rl.update_from_headers({"x-ratelimit-remaining-tokens": "90000", "x-ratelimit-reset-tokens": "1s"})
        await rl.acquire(60)
        starts["small"] = vt.now
        await rl.acquire(500)
        starts["big"] = vt.now

    vt.run(go())
    assert starts == {"small": 0.0, "big": pytest.approx(0.02)}


def test_header_update_wakes_a_waiter():
    """A waiter sleeping on the server hold re-evaluates when new headers arrive."""
    vt = VirtualTime()
    rl = RateLimiter(None, None, clock=vt.clock, sleep=vt.sleep)
    got = []

    async def waiter():
        await rl.acquire(10)
        got.append(vt.now)

    async def go():
        rl.update_from_headers({"x-ratelimit-limit-requests": "1"})
        await rl.acquire()
        t = asyncio.ensure_future(waiter())
        await vt.sleep(5)
        rl.update_from_headers({"x-ratelimit-limit-requests": "10"})
        await t

    vt.run(go())
    assert got == [5.0]


# -- the sliding-window guarantee --------------------------------------------------------------

def _greedy(rl: RateLimiter, vt: VirtualTime, workers: int, sizes, latency, actual, record: list):
    async def worker(rng):
        while True:
            reserved = sizes(rng)
            res = await rl.acquire(reserved)
            start = vt.now
            await vt.sleep(latency(rng))
            used = actual(rng, reserved)
            rl.reconcile(res, used)
            record.append((start, reserved, used))

    async def main():
        await asyncio.gather(*(worker(random.Random(i)) for i in range(workers)))

    return main()


def test_rpm_sliding_window_never_exceeded_and_throughput_at_limit():
    vt = VirtualTime()
    rl = RateLimiter(rpm=60, tpm=None, clock=vt.clock, sleep=vt.sleep)
    starts: list[float] = []

    async def worker():
        while True:
            await rl.acquire(0)
            starts.append(vt.now)
            await vt.sleep(0.5)

    async def main():
        await asyncio.gather(*(worker() for _ in range(100)))

    vt.run(main(), until=300.0)
    assert max_in_window([(t, 1) for t in starts]) <= 60
    # The ideal is 300 in 5 minutes (60 per window): the log holds nothing back.
    assert len(starts) == 300


def test_burst_at_end_of_window_then_steady_demand():
    """The pattern that gets a token bucket (capacity = limit, refilling continuously) to ~2x the
    limit in one window: idle, a full burst late, then steady demand. The bucket would admit the
    burst at t=59 and ~59 more by t=118; the log admits nothing until the burst ages out."""
    vt = VirtualTime()
    rl = RateLimiter(rpm=60, tpm=None, clock=vt.clock, sleep=vt.sleep)
    starts: list[float] = []

    async def client(at):
        await vt.sleep(at)
        await rl.acquire()
        starts.append(vt.now)

    async def main():
        await asyncio.gather(*(client(59.0) for _ in range(60)), *(client(60.0 + i) for i in range(60)))

    vt.run(main())
    assert max_in_window([(t, 1) for t in starts]) == 60
    assert min(t for t in starts if t > 59.0) == pytest.approx(119.0)


@pytest.mark.parametrize("seed", range(40))
def test_sliding_window_property_randomized(seed):
    """Random limits, period, sizes, latencies, arrivals and reconciles (down and up): every
    window holds <= rpm starts and <= tpm tokens, each request counted at min(reserved, actual)
    (an upward correction is the estimate's error, which the limiter charges but cannot undo)."""
    rng = random.Random(seed)
    vt = VirtualTime()
    period = rng.choice([1.0, 10.0, 60.0])
    rpm, tpm = rng.randint(1, 20), rng.randint(100, 2000)
    rl = RateLimiter(rpm=rng.choice([rpm, None]), tpm=tpm, period_s=period, clock=vt.clock, sleep=vt.sleep)
    record = []

    async def worker(wrng):
        await vt.sleep(wrng.uniform(0, period))
        while True:
            reserved = wrng.randint(0, tpm)
            res = await rl.acquire(reserved)
            start = vt.now
            await vt.sleep(wrng.uniform(0, period / 3))
            actual = int(reserved * wrng.uniform(0, 1.3))
            rl.reconcile(res, actual)
            record.append((start, reserved, actual))
            await vt.sleep(wrng.expovariate(4 / period))

    async def main():
        await asyncio.gather(*(worker(random.Random(rng.random())) for _ in range(rng.randint(1, 15))))

    vt.run(main(), until=period * 8)
    assert record
    if rl.rpm is not None:
        assert max_in_window([(t, 1) for t, _, _ in record], period) <= rpm
    assert max_in_window([(t, min(r, a)) for t, r, a in record], period) <= tpm


def test_rpm_guarantee_with_uneven_arrivals():
    """Requests trickling in at random times, not a burst at t=0: still <= rpm in every window,
    and the random offsets do not cost throughput once the limiter is the bottleneck."""
    vt = VirtualTime()
    rl = RateLimiter(rpm=45, tpm=None, clock=vt.clock, sleep=vt.sleep)
    starts: list[float] = []

    async def worker(rng):
        await vt.sleep(rng.uniform(0, 30))
        while True:
            await rl.acquire()
            starts.append(vt.now)
            await vt.sleep(rng.expovariate(1 / 3))

    async def main():
        await asyncio.gather(*(worker(random.Random(i)) for i in range(40)))

    vt.run(main(), until=600.0)
    assert max_in_window([(t, 1) for t in starts]) <= 45
    assert len(starts) >= 0.9 * 45 * 10


def test_tpm_sliding_window_with_varied_sizes_no_reconcile():
    vt = VirtualTime()
    tpm = 20_000
    rl = RateLimiter(rpm=None, tpm=tpm, clock=vt.clock, sleep=vt.sleep)
    record: list = []
    coro = _greedy(rl, vt, 12, sizes=lambda r: r.randint(100, 3000), latency=lambda r: r.uniform(1, 8),
                   actual=lambda r, reserved: reserved, record=record)
    vt.run(coro, until=300.0)
    assert max_in_window([(s, res) for s, res, _ in record]) <= tpm
    # Greedy clients with requests up to 3000 tokens: only the tail of each window is wasted.
    assert sum(res for _, res, _ in record) >= 0.85 * 5 * tpm


def test_tpm_reconcile_frees_room_and_window_holds_on_final_figures():
    """Reserve max_tokens, use a fraction: the freed tokens are reused at once, and every window
    honours tpm counting each request at its reconciled size."""
    vt = VirtualTime()
    tpm = 20_000
    rl = RateLimiter(rpm=None, tpm=tpm, clock=vt.clock, sleep=vt.sleep)
    record: list = []
    coro = _greedy(rl, vt, 30, sizes=lambda r: r.randint(500, 4000), latency=lambda r: r.uniform(1, 6),
                   actual=lambda r, reserved: int(reserved * r.uniform(0.1, 1.0)), record=record)
    vt.run(coro, until=300.0)
    assert max_in_window([(s, used) for s, _, used in record]) <= tpm
    used_total = sum(used for _, _, used in record)
    # Without reconcile the reserved sizes would cap actual use at ~55% of 5*tpm.
    assert used_total >= 0.8 * 5 * tpm
    assert sum(res for _, res, _ in record) > 5 * tpm     # more reserved than tpm allows: reuse happened


def test_rpm_and_tpm_together():
    vt = VirtualTime()
    rl = RateLimiter(rpm=30, tpm=10_000, clock=vt.clock, sleep=vt.sleep)
    record: list = []
    coro = _greedy(rl, vt, 20, sizes=lambda r: r.choice([50, 100, 2500]), latency=lambda r: r.uniform(0.5, 3),
                   actual=lambda r, reserved: reserved, record=record)
    vt.run(coro, until=300.0)
    assert max_in_window([(s, 1) for s, _, _ in record]) <= 30
    assert max_in_window([(s, res) for s, res, _ in record]) <= 10_000


def test_reconcile_upwards_delays_later_starts():
    vt = VirtualTime()
    rl = RateLimiter(None, 1000, clock=vt.clock, sleep=vt.sleep)
    starts = []

    async def go():
        a = await rl.acquire(400)
        rl.reconcile(a, 900)          # the server counted more than tiktoken estimated
        await rl.acquire(400)         # 900 + 400 > 1000: waits for a to age out
        starts.append(vt.now)

    vt.run(go())
    assert starts == pytest.approx([60.0])


def test_reconcile_with_bare_int():
    vt = VirtualTime()
    rl = RateLimiter(None, 1000, clock=vt.clock, sleep=vt.sleep)

    async def go():
        await rl.acquire(800)
        rl.reconcile(800, 100)
        assert rl.tokens_in_window == 100
        await rl.acquire(900)
        return vt.now

    assert vt.run(go()) == 0.0


def test_reconcile_after_entry_left_window_changes_nothing():
    vt = VirtualTime()
    rl = RateLimiter(None, 1000, clock=vt.clock, sleep=vt.sleep)

    async def go():
        a = await rl.acquire(800)
        await vt.sleep(90)            # a very slow generation
        rl.reconcile(a, 5000)
        assert rl.tokens_in_window == 0
        await rl.acquire(1000)
        return vt.now

    assert vt.run(go()) == 90.0


def test_request_bigger_than_tpm_is_admitted_alone():
    vt = VirtualTime()
    rl = RateLimiter(rpm=None, tpm=1000, clock=vt.clock, sleep=vt.sleep)
    starts = {}

    async def go():
        await rl.acquire(300)
        starts["small"] = vt.now
        await rl.acquire(5000)        # waits for the window to empty, then goes alone
        starts["huge"] = vt.now
        await rl.acquire(10)          # and blocks others until it ages out
        starts["after"] = vt.now

    vt.run(go())                      # VirtualTime raises Deadlock if nothing could ever proceed
    assert starts == pytest.approx({"small": 0.0, "huge": 60.0, "after": 120.0})


def test_request_bigger_than_tpm_in_a_crowd_does_not_deadlock():
    vt = VirtualTime()
    rl = RateLimiter(rpm=None, tpm=1000, clock=vt.clock, sleep=vt.sleep)
    done = []

    async def worker(n, size):
        for _ in range(n):
            await rl.acquire(size)
        done.append(size)

    async def main():
        await asyncio.gather(worker(20, 200), worker(2, 3000), worker(20, 150))

    vt.run(main())
    assert sorted(done) == [150, 200, 3000]


def test_waiters_are_served_in_arrival_order():
    """A large request queued first is not starved by small ones arriving after it."""
    vt = VirtualTime()
    rl = RateLimiter(None, 1000, clock=vt.clock, sleep=vt.sleep)
    order = []

    async def one(name, size, delay):
        await vt.sleep(delay)
        await rl.acquire(size)
        order.append(name)

    async def main():
        await rl.acquire(900)
        await asyncio.gather(one("big", 800, 1), *(one(f"small{i}", 50, 2 + i) for i in range(3)))

    vt.run(main())
    assert order[0] == "big"


def test_cancelled_waiter_does_not_block_the_queue():
    vt = VirtualTime()
    rl = RateLimiter(rpm=1, tpm=None, clock=vt.clock, sleep=vt.sleep)

    async def main():
        await rl.acquire()
        t = asyncio.ensure_future(rl.acquire())
        await vt.sleep(1)
        t.cancel()
        await vt.sleep(1)
        await rl.acquire()
        return vt.now

    assert vt.run(main()) == pytest.approx(60.0)


def test_acquire_returns_reservation_and_validates():
    rl = RateLimiter(10, 100)
    got = rl.try_acquire(5)
    assert isinstance(got, Reservation) and got.tokens == 5
    with pytest.raises(ValueError):
        rl.try_acquire(-1)
    with pytest.raises(ValueError):
        RateLimiter(0.5, None)
    with pytest.raises(ValueError):
        RateLimiter(None, None, period_s=0)


def test_real_clock_smoke():
    """Default clock and sleep: a short period really waits (and not much longer)."""
    rl = RateLimiter(rpm=2, tpm=None, period_s=0.2)

    async def go():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(5):
            await rl.acquire()
        return loop.time() - t0

    elapsed = asyncio.run(go())
    assert 0.39 <= elapsed < 1.5


# -- adaptive concurrency ---------------------------------------------------------------------

def test_burst_of_429s_halves_once():
    vt = VirtualTime()
    ac = AdaptiveConcurrency(16, maximum=16, clock=vt.clock, sleep=vt.sleep)

    async def request(ev):
        async with ac:
            await ev.wait()
            ac.on_rate_limited()         # all 16 in flight get 429 from the same window

    async def main():
        ev = asyncio.Event()
        tasks = [asyncio.ensure_future(request(ev)) for _ in range(16)]
        await vt.sleep(1)
        assert ac.in_flight == 16
        ev.set()
        await asyncio.gather(*tasks)

    vt.run(main())
    assert ac.limit == 8 and ac.decreases == 1


def test_429s_in_successive_epochs_each_cut():
    ac = AdaptiveConcurrency(16, maximum=16)

    async def main():
        for expected in (8, 4, 2, 1, 1):
            slot = await ac.acquire()
            ac.on_rate_limited(slot)
            ac.release()
            assert ac.limit == expected

    asyncio.run(main())
    assert ac.limit == 1 and ac.minimum == 1


def test_429_without_slot_info_uses_in_flight_estimate():
    ac = AdaptiveConcurrency(10, maximum=10)

    async def main():
        for _ in range(10):
            await ac.acquire()

    asyncio.run(main())
    # Reported from outside the requests' tasks (no context): the burst still counts once.
    assert ac.on_rate_limited() is True
    for _ in range(9):
        ac.release()
        assert ac.on_rate_limited() is False
    assert ac.limit == 5


def test_additive_recovery_to_maximum_about_one_per_round_trip():
    vt = VirtualTime()
    ac = AdaptiveConcurrency(4, minimum=2, maximum=12, clock=vt.clock, sleep=vt.sleep)
    peak = 0
    limits_per_rtt = []

    async def worker():
        nonlocal peak
        while True:
            async with ac:
                peak = max(peak, ac.in_flight)
                assert ac.in_flight <= ac.limit
                await vt.sleep(1.0)          # one round trip
                ac.on_success()

    async def sampler():
        for _ in range(40):
            limits_per_rtt.append(ac.limit)
            await vt.sleep(1.0)

    async def main():
        await asyncio.gather(sampler(), *(worker() for _ in range(30)))

    vt.run(main(), until=40.5)
    assert limits_per_rtt[0] == 4 and limits_per_rtt[-1] == 12
    assert max(limits_per_rtt) == 12 and peak <= 12
    # Additive: the limit never jumps by more than ~1 per round trip.
    steps = [b - a for a, b in zip(limits_per_rtt, limits_per_rtt[1:])]
    assert max(steps) <= 1 and all(s >= 0 for s in steps)
    # and it took about (12 - 4) round trips, not 1 and not 40
    assert 6 <= limits_per_rtt.index(12) <= 12


def test_idle_client_does_not_grow_the_limit():
    ac = AdaptiveConcurrency(4, maximum=100)

    async def main():
        for _ in range(50):
            async with ac:               # one at a time: the limit of 4 is never used
                ac.on_success()

    asyncio.run(main())
    assert ac.limit == 4


def test_never_exceeds_max_or_goes_below_min_under_chaos():
    vt = VirtualTime()
    ac = AdaptiveConcurrency(5, minimum=2, maximum=7, clock=vt.clock, sleep=vt.sleep)
    seen = []

    async def worker(rng):
        while True:
            async with ac:
                seen.append((ac.in_flight, ac.limit))
                await vt.sleep(rng.uniform(0.1, 2))
                if rng.random() < 0.15:
                    ac.on_rate_limited()
                else:
                    ac.on_success()

    async def main():
        await asyncio.gather(*(worker(random.Random(i)) for i in range(25)))

    vt.run(main(), until=200)
    assert all(2 <= lim <= 7 for _, lim in seen)
    assert all(n <= 7 for n, _ in seen)
    assert ac.decreases > 3 and len(seen) > 200
    assert {lim for _, lim in seen} == {2, 3, 4, 5, 6, 7}   # it explored the whole range


def test_shrunk_limit_is_honoured_by_new_acquirers():
    vt = VirtualTime()
    ac = AdaptiveConcurrency(8, maximum=8, clock=vt.clock, sleep=vt.sleep)
    over = []

    async def worker(i):
        async with ac:
            await vt.sleep(1 + i * 0.01)
            if i == 0:
                ac.on_rate_limited()
        for _ in range(5):
            async with ac:
                over.append(ac.in_flight > ac.limit)
                await vt.sleep(1)

    async def main():
        await asyncio.gather(*(worker(i) for i in range(8)))

    vt.run(main())
    assert ac.limit == 4 and not any(over)


def test_pause_blocks_new_acquirers_until_deadline():
    vt = VirtualTime()
    ac = AdaptiveConcurrency(4, clock=vt.clock, sleep=vt.sleep)
    starts = []

    async def request(delay):
        await vt.sleep(delay)
        async with ac:
            starts.append(vt.now)

    async def main():
        async with ac:                   # in flight when the 429 arrives: unaffected
            ac.on_rate_limited()
            ac.pause_for(30)             # Retry-After: 30
            assert ac.paused_until == 30
        await asyncio.gather(request(1), request(10), request(29.9), request(31))
        ac.pause_until(40)               # a shorter later pause never shortens the current one
        ac.pause_until(35)
        await ac.wait_pause()
        starts.append(vt.now)

    vt.run(main())
    assert starts == [30, 30, 30, 31, 40]
    assert ac.paused_until is None


def test_pause_extended_while_waiting():
    vt = VirtualTime()
    ac = AdaptiveConcurrency(2, clock=vt.clock, sleep=vt.sleep)

    async def main():
        ac.pause_for(10)

        async def extend():
            await vt.sleep(5)
            ac.pause_for(20)             # second 429 with Retry-After 20, at t=5

        t = asyncio.ensure_future(extend())
        async with ac:
            now = vt.now
        await t
        return now

    assert vt.run(main()) == 25


def test_cancelled_slot_waiter_passes_its_turn_on():
    ac = AdaptiveConcurrency(1)

    async def main():
        await ac.acquire()
        a = asyncio.ensure_future(ac.acquire())
        b = asyncio.ensure_future(ac.acquire())
        await asyncio.sleep(0)
        ac.release()                     # wakes a ...
        a.cancel()                       # ... which is cancelled before it runs
        await asyncio.wait_for(b, 1)     # b must get the slot
        assert ac.in_flight == 1
        ac.release()

    asyncio.run(main())


def test_adaptive_validation_and_clamping():
    assert AdaptiveConcurrency(50, maximum=8).limit == 8
    assert AdaptiveConcurrency(0, minimum=2).limit == 2
    for kw in ({"minimum": 0}, {"minimum": 5, "maximum": 3}, {"decrease": 1.0}, {"increase": 0}):
        with pytest.raises(ValueError):
            AdaptiveConcurrency(4, **kw)
    ac = AdaptiveConcurrency(1)
    with pytest.raises(RuntimeError):
        ac.release()

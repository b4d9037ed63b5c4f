"""Budget caps: USD and total tokens, counting in-flight reservations at their worst case."""
from __future__ import annotations

import asyncio
import random

import pytest

from datagen.errors import DatagenError
from datagen.teacher.budget import REASON_COST, REASON_TOKENS, Budget, Price, Prices

# Made-up prices: the tests need arithmetic, not a provider's current list.
PRICES = Prices({"cheap": {"input": 1.0, "output": 2.0}, "free-local": {"input": 0, "output": 0}})


# -- prices ------------------------------------------------------------------------------------

def test_prices_from_yaml_shape_and_cost():
    assert PRICES.get("cheap") == Price(1.0, 2.0)
    assert PRICES.cost("cheap", 1_000_000, 500_000) == pytest.approx(2.0)
    assert PRICES.cost("cheap", 1000, 1000) == pytest.approx(0.003)
    assert "cheap" in PRICES and PRICES.models == ["cheap", "free-local"]


def test_unknown_model_has_no_cost_and_default_table_is_empty():
    assert PRICES.cost("gpt-unknown", 10, 10) is None
    assert Prices().models == [] and Prices().cost("gpt-4o-mini", 1, 1) is None
    assert PRICES.get("Cheap") is None      # exact names only: a wrong price is worse than none


@pytest.mark.parametrize("table,where", [
    ({"m": {"input": -1, "output": 1}}, "prices.m.input"),
    ({"m": {"input": 1}}, "prices.m.output"),
    ({"m": {"input": "0.1", "output": 1}}, "prices.m.input"),
    ({"m": {"input": True, "output": 1}}, "prices.m.input"),
    ({"m": {"input": 1, "output": 1, "cached": 0.5}}, "prices.m"),
    ({"m": 0.15}, "prices.m"),
    (["m"], "prices"),
])
def test_prices_validation_names_the_field(table, where):
    with pytest.raises(DatagenError, match=where.replace(".", r"\.")):
        Prices(table)


# -- token cap ---------------------------------------------------------------------------------

def test_token_cap_counts_in_flight_reservations():
    b = Budget(max_cost_usd=None, max_total_tokens=1000, prices=PRICES, model="cheap")
    r1 = b.reserve(200, 200)
    r2 = b.reserve(200, 200)
    assert r1 and r2 and b.reserved_tokens == 800 and b.in_flight == 2
    # 800 reserved + 400 > 1000: refused now, but not exhausted (in-flight may settle lower)
    assert not b.can_start(200, 200)
    assert b.reserve(200, 200) is None and not b.exhausted
    b.settle(r1, 150, 50)                   # used 200 of the 400 reserved
    assert b.spent_tokens == 200 and b.reserved_tokens == 400
    r3 = b.reserve(200, 200)                # 200 + 400 + 400 = 1000: exactly fits
    assert r3 is not None
    b.settle(r2, 200, 200)
    b.settle(r3, 200, 100)
    assert b.spent_tokens == 900 and b.in_flight == 0 and not b.exhausted
    # Nothing in flight and the next worst case does not fit: final.
    assert b.reserve(50, 100) is None
    assert b.exhausted and b.reason == REASON_TOKENS == "budget: max_total_tokens"
    # Once exhausted, stays exhausted, even for a request that would fit.
    assert b.reserve(1, 1) is None and not b.can_start(1, 1) and b.exhausted


def test_spending_the_cap_exactly_exhausts_on_settle():
    b = Budget(None, 100, PRICES, "cheap")
    r = b.reserve(50, 50)
    b.settle(r, 60, 40)
    assert b.exhausted and b.reason == REASON_TOKENS


def test_input_underestimate_can_overshoot_only_by_the_estimate_error():
    b = Budget(None, 1000, PRICES, "cheap")
    r = b.reserve(400, 600)
    b.settle(r, 450, 600)                   # the server counted 50 more input tokens than tiktoken
    assert b.spent_tokens == 1050 and b.exhausted and b.reason == REASON_TOKENS


def test_can_start_is_a_pure_query():
    b = Budget(None, 100, PRICES, "cheap")
    assert not b.can_start(80, 80)
    assert not b.exhausted                  # asking is not trying
    assert b.can_start(50, 50)


def test_single_request_bigger_than_the_whole_budget():
    b = Budget(None, 1000, PRICES, "cheap")
    assert b.reserve(100, 2048) is None     # max_tokens alone could exceed the cap
    assert b.exhausted and b.reason == REASON_TOKENS and b.spent_tokens == 0


# -- cost cap ----------------------------------------------------------------------------------

def test_cost_cap_with_known_price():
    # cheap: $1/1M in, $2/1M out -> a (1000 in, 1000 out) worst case costs $0.003
    b = Budget(max_cost_usd=0.01, max_total_tokens=None, prices=PRICES, model="cheap")
    assert b.cost_enforced
    held = [b.reserve(1000, 1000) for _ in range(3)]
    assert all(held) and b.reserved_usd == pytest.approx(0.009)
    assert b.reserve(1000, 1000) is None and not b.exhausted   # 0.012 > 0.01, 3 in flight
    for r in held:
        b.settle(r, 1000, 500)              # $0.002 each
    assert b.spent_usd == pytest.approx(0.006) and not b.exhausted
    assert b.reserve(1000, 1000) is not None                    # 0.006 + 0.003 <= 0.01
    assert b.reserve(1000, 1000) is None and not b.exhausted


def test_cost_cap_exhausts_with_reason():
    b = Budget(0.005, None, PRICES, "cheap")
    r = b.reserve(1000, 1000)
    b.settle(r, 1000, 1000)                 # $0.003
    assert b.reserve(1000, 1000) is None
    assert b.exhausted and b.reason == REASON_COST == "budget: max_cost"
    assert b.to_dict()["reason"] == "budget: max_cost" and b.to_dict()["spent_usd"] == pytest.approx(0.003)


def test_cost_cap_reached_exactly_on_settle():
    b = Budget(0.003, None, PRICES, "cheap")
    r = b.reserve(1000, 1000)
    b.settle(r, 1000, 1000)
    assert b.exhausted and b.reason == REASON_COST


def test_cost_checked_before_tokens_when_both_break():
    b = Budget(0.001, 10, PRICES, "cheap")
    assert b.reserve(1000, 1000) is None and b.reason == REASON_COST


def test_unknown_model_gets_token_limit_only():
    b = Budget(max_cost_usd=0.000001, max_total_tokens=5000, prices=PRICES, model="mystery-model")
    assert not b.cost_enforced and b.spent_usd is None and b.reserved_usd is None
    r = b.reserve(1000, 1000)               # would cost far more than $0.000001 at any price
    assert r is not None
    b.settle(r, 1000, 1000)
    assert b.spent_usd is None and b.spent_tokens == 2000 and not b.exhausted
    assert b.reserve(1000, 1000) is not None
    assert b.reserve(1000, 1000) is None and b.reason is None   # 2000 + 2000 + 2000 > 5000, in flight
    assert b.to_dict()["cost_enforced"] is False


def test_no_caps_never_exhausts():
    b = Budget(None, None, Prices(), "x")
    for _ in range(100):
        b.settle(b.reserve(10_000, 10_000), 10_000, 10_000)
    assert not b.exhausted and b.spent_tokens == 2_000_000


def test_free_model_cost_cap_never_binds():
    b = Budget(0.0, None, PRICES, "free-local")
    b.settle(b.reserve(10**6, 10**6), 10**6, 10**6)
    assert not b.exhausted and b.spent_usd == 0


# -- bookkeeping -------------------------------------------------------------------------------

def test_release_returns_the_reservation_unbilled():
    b = Budget(None, 1000, PRICES, "cheap")
    r = b.reserve(400, 600)
    b.release(r)
    assert b.spent_tokens == 0 and b.reserved_tokens == 0 and b.in_flight == 0
    with pytest.raises(ValueError):
        b.settle(r, 1, 1)                   # settling twice would corrupt the totals


def test_validation():
    with pytest.raises(DatagenError):
        Budget(-1, None, PRICES, "cheap")
    with pytest.raises(DatagenError):
        Budget(None, -5, PRICES, "cheap")
    b = Budget(None, 10, PRICES, "cheap")
    with pytest.raises(ValueError):
        b.reserve(-1, 0)


def test_random_workload_never_exceeds_caps_when_estimates_are_upper_bounds():
    """Many interleaved requests whose real usage is at most their reservation: the caps hold
    exactly, and the run stops only when the next worst case no longer fits."""
    rng = random.Random(7)
    b = Budget(max_cost_usd=0.5, max_total_tokens=200_000, prices=PRICES, model="cheap")
    open_ = []
    while not b.exhausted:
        if open_ and rng.random() < 0.5:
            r = open_.pop(rng.randrange(len(open_)))
            b.settle(r, rng.randint(0, r.input_tokens), rng.randint(0, r.output_tokens))
        else:
            r = b.reserve(rng.randint(10, 2000), rng.randint(10, 2000))
            if r is not None:
                open_.append(r)
            elif open_:
                b.settle(open_.pop(), 10, 10)
        assert b.spent_tokens + b.reserved_tokens <= 200_000
        assert b.spent_usd + b.reserved_usd <= 0.5 + 1e-12
    assert b.reason in (REASON_COST, REASON_TOKENS)


# -- async -------------------------------------------------------------------------------------

def test_reserve_wait_waits_for_in_flight_to_settle_then_stops_when_exhausted():
    b = Budget(None, 1000, PRICES, "cheap")
    events = []

    async def request(name, est, out, used, latency):
        res = await b.reserve_wait(est, out)
        if res is None:
            events.append((name, "stopped", b.reason))
            return
        events.append((name, "started"))
        await asyncio.sleep(latency)
        b.settle(res, *used)
        events.append((name, "settled"))

    async def main():
        await asyncio.gather(
            request("a", 300, 300, (100, 100), 0.02),
            request("b", 300, 300, (100, 100), 0.04),   # has to wait for a to settle
            request("c", 300, 300, (300, 300), 0.01),   # waits for b too, then spends the rest
        )

    asyncio.run(asyncio.wait_for(main(), 5))
    assert events[0] == ("a", "started")
    assert events.index(("b", "started")) > events.index(("a", "settled"))
    assert ("b", "settled") in events
    # After a and b: spent 400; c's 600 worst case fits exactly; its settle reaches the cap.
    assert ("c", "started") in events and b.spent_tokens == 1000 and b.exhausted


def test_reserve_wait_returns_none_for_all_waiters_on_exhaustion():
    b = Budget(None, 1000, PRICES, "cheap")

    async def main():
        first = await b.reserve_wait(400, 400)
        waiters = [asyncio.ensure_future(b.reserve_wait(300, 300)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert not any(w.done() for w in waiters)
        b.settle(first, 500, 400)           # 900 spent: no 600 worst case will ever fit
        return await asyncio.wait_for(asyncio.gather(*waiters), 2)

    assert asyncio.run(main()) == [None, None, None]
    assert b.exhausted and b.reason == REASON_TOKENS


def test_the_budget_message_says_whether_anything_was_spent():
    from datagen.teacher.budget import Budget, Prices
    fresh = Budget(max_total_tokens=100, prices=Prices({}), model="m")
    assert fresh.reserve(80, 50) is None
    assert "too small for a single request" in fresh.too_small_message()
    used = Budget(max_total_tokens=1000, prices=Prices({}), model="m")
    r = used.reserve(300, 300)
    used.settle(r, 300, 300)
    assert used.reserve(300, 300) is None
    msg = used.too_small_message()
    assert "ran out after 600 tokens" in msg and "too small" not in msg

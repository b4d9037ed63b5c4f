"""Spending caps for a run: USD and total tokens, enforced before a request starts (DESIGN §3).

A cap is only worth having if it is never blown by the requests already in flight, so the budget
counts every started request at its *worst case* (estimated input + max_tokens) until its usage is
known, then settles it at the real figure and frees the difference. The only way to overshoot is
an input estimate (tiktoken, offline) lower than the server's own count, on requests in flight.

Prices are the user's to state (YAML `prices: {model: {input: .., output: ..}}`, USD per 1M
tokens): public price lists change and differ between providers serving the same model name, so
there is no built-in table. A model without a price is limited by tokens only; `cost()` and
`spent_usd` say None rather than guess.
"""
from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datagen.errors import DatagenError

REASON_COST = "budget: max_cost"
REASON_TOKENS = "budget: max_total_tokens"
_PER = 1_000_000
_EPS = 1e-12   # float slack so that spending exactly the cap counts as "within" it


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / _PER


class Prices:
    """Per-model prices, from the YAML shape `{model_name: {input: 0.15, output: 0.60}}`.

    Model names match exactly: a dated snapshot and its alias, or one name at two providers, may
    cost differently, and a wrong price is worse than none."""

    def __init__(self, table: Mapping[str, Mapping[str, Any]] | None = None):
        self._table: dict[str, Price] = {}
        if table is None:
            return
        if not isinstance(table, Mapping):
            raise DatagenError(f"prices: expected a mapping of model -> {{input, output}}, got {type(table).__name__}")
        for model, entry in table.items():
            if not isinstance(entry, Mapping):
                raise DatagenError(f"prices.{model}: expected {{input: <USD/1M>, output: <USD/1M>}}, "
                                   f"got {entry!r}")
            values = {}
            for key in ("input", "output"):
                v = entry.get(key)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise DatagenError(f"prices.{model}.{key}: expected a non-negative number of USD per "
                                       f"1M tokens, got {v!r}")
                values[key] = float(v)
            extra = set(entry) - {"input", "output"}
            if extra:
                raise DatagenError(f"prices.{model}: unknown keys {sorted(extra)} (expected input, output)")
            self._table[str(model)] = Price(**values)

    def get(self, model: str) -> Price | None:
        return self._table.get(model)

    def __contains__(self, model: object) -> bool:
        return model in self._table

    @property
    def models(self) -> list[str]:
        return sorted(self._table)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD for this usage, or None when the model has no price."""
        price = self._table.get(model)
        return None if price is None else price.cost(input_tokens, output_tokens)


@dataclass(eq=False)
class BudgetReservation:
    """A started request's worst case, held against the budget until `settle`."""

    input_tokens: int
    output_tokens: int
    settled: bool = False

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Budget:
    """Caps on USD (`max_cost_usd`, needs a price for `model`) and on total tokens.

    `reserve()` admits a request only if spent + in-flight reservations + its worst case stays
    within every cap. A refusal while others are in flight is temporary (they may settle lower;
    `reserve_wait` waits for that). A refusal with nothing in flight is final: the budget is
    `exhausted`, with `reason` "budget: max_cost" or "budget: max_total_tokens", and it stays so.
    Settled spend reaching a cap exhausts it too.

    Methods never await while holding state, so one event loop needs no lock; a threading lock
    makes the synchronous methods safe from worker threads as well.
    """

    def __init__(self, max_cost_usd: float | None = None, max_total_tokens: int | None = None,
                 prices: Prices | None = None, model: str = ""):
        if max_cost_usd is not None and not max_cost_usd >= 0:
            raise DatagenError(f"--max-cost: must be a non-negative number of USD, got {max_cost_usd}")
        if max_total_tokens is not None and not max_total_tokens >= 0:
            raise DatagenError(f"--max-total-tokens: must be non-negative, got {max_total_tokens}")
        self.max_cost_usd = max_cost_usd
        self.max_total_tokens = max_total_tokens
        self.prices = prices or Prices()
        self.model = model
        self.price = self.prices.get(model)
        self._lock = threading.Lock()
        self._spent_in = self._spent_out = 0
        self._res_in = self._res_out = 0
        self._in_flight = 0
        self._reason: str | None = None
        self._waiters: list[asyncio.Future] = []
        self.refused: tuple[int, int] | None = None   # worst case (in, out) of the request that ended it

    # -- state ------------------------------------------------------------------------------------
    @property
    def cost_enforced(self) -> bool:
        """False when a cost cap is set but the model has no price (only tokens are capped)."""
        return self.max_cost_usd is not None and self.price is not None

    @property
    def exhausted(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def spent_input_tokens(self) -> int:
        return self._spent_in

    @property
    def spent_output_tokens(self) -> int:
        return self._spent_out

    @property
    def spent_tokens(self) -> int:
        return self._spent_in + self._spent_out

    @property
    def spent_usd(self) -> float | None:
        return None if self.price is None else self.price.cost(self._spent_in, self._spent_out)

    @property
    def reserved_tokens(self) -> int:
        return self._res_in + self._res_out

    @property
    def reserved_usd(self) -> float | None:
        return None if self.price is None else self.price.cost(self._res_in, self._res_out)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def too_small_message(self) -> str:
        """Why not even one request fitted, with the figures a user needs to pick a budget."""
        est_in, max_out = self.refused or (0, 0)
        need = f"up to {est_in + max_out:,} tokens ({est_in:,} in + {max_out:,} out)"
        if self.price is not None:
            need += f", ${self.price.cost(est_in, max_out):.6f}"
        caps = []
        if self.max_total_tokens is not None:
            caps.append(f"--max-total-tokens {self.max_total_tokens:,}")
        if self.max_cost_usd is not None:
            caps.append(f"--max-cost {self.max_cost_usd:g}")
        if self.spent_tokens:
            spent = f"{self.spent_tokens:,} tokens" + (f", ${self.spent_usd:.6f}" if self.spent_usd is not None else "")
            return (f"budget: {' / '.join(caps) or 'the budget'} ran out after {spent} before one instruction was "
                    f"finished (the next request needed {need}); nothing was published")
        return (f"budget: {' / '.join(caps) or 'the budget'} is too small for a single request (the first one "
                f"needs {need}); nothing was published")

    def to_dict(self) -> dict[str, Any]:
        """For the manifest and progress display."""
        return {
            "model": self.model,
            "max_cost_usd": self.max_cost_usd,
            "max_total_tokens": self.max_total_tokens,
            "cost_enforced": self.cost_enforced,
            "spent_tokens": self.spent_tokens,
            "spent_usd": self.spent_usd,
            "exhausted": self.exhausted,
            "reason": self.reason,
        }

    # -- admission --------------------------------------------------------------------------------
    def _over(self, add_in: int, add_out: int) -> str | None:
        """Which cap spent + reserved + this worst case would break, if any (cost checked first:
        money is what the user most wants to protect)."""
        if self.cost_enforced:
            total = self.price.cost(self._spent_in + self._res_in + add_in, self._spent_out + self._res_out + add_out)
            if total > self.max_cost_usd + _EPS:
                return REASON_COST
        if self.max_total_tokens is not None:
            total_tokens = self._spent_in + self._spent_out + self._res_in + self._res_out + add_in + add_out
            if total_tokens > self.max_total_tokens:
                return REASON_TOKENS
        return None

    @staticmethod
    def _check(est_input_tokens: int, max_output_tokens: int) -> None:
        if est_input_tokens < 0 or max_output_tokens < 0:
            raise ValueError(f"token counts must be >= 0, got {est_input_tokens}, {max_output_tokens}")

    def can_start(self, est_input_tokens: int, max_output_tokens: int) -> bool:
        """Would this request fit in the worst case, counting in-flight reservations? Pure query:
        it never marks the budget exhausted (use `reserve` for that)."""
        self._check(est_input_tokens, max_output_tokens)
        with self._lock:
            return self._reason is None and self._over(est_input_tokens, max_output_tokens) is None

    def reserve(self, est_input_tokens: int, max_output_tokens: int) -> BudgetReservation | None:
        """Hold the worst case of a request about to start, or return None (see class doc)."""
        self._check(est_input_tokens, max_output_tokens)
        with self._lock:
            if self._reason is not None:
                return None
            over = self._over(est_input_tokens, max_output_tokens)
            if over is not None:
                if self._in_flight == 0:
                    self._reason = over
                    self.refused = (est_input_tokens, max_output_tokens)
                    self._notify()
                return None
            self._res_in += est_input_tokens
            self._res_out += max_output_tokens
            self._in_flight += 1
            return BudgetReservation(est_input_tokens, max_output_tokens)

    def settle(self, reservation: BudgetReservation, actual_input: int, actual_output: int) -> None:
        """Replace the worst case by the usage the response reported."""
        if actual_input < 0 or actual_output < 0:
            raise ValueError(f"token counts must be >= 0, got {actual_input}, {actual_output}")
        with self._lock:
            if reservation.settled:
                raise ValueError("reservation already settled")
            reservation.settled = True
            self._res_in -= reservation.input_tokens
            self._res_out -= reservation.output_tokens
            self._in_flight -= 1
            self._spent_in += actual_input
            self._spent_out += actual_output
            if self._reason is None:
                # At the cap nothing more fits, as every real request costs something (unless
                # the model is free, in which case only exceeding it, impossible, would count).
                free = self.price is not None and self.price.input == 0 and self.price.output == 0
                if self.cost_enforced and not free and self.spent_usd >= self.max_cost_usd - _EPS:
                    self._reason = REASON_COST
                elif self.max_total_tokens is not None and self.spent_tokens >= self.max_total_tokens:
                    self._reason = REASON_TOKENS
            self._notify()

    def release(self, reservation: BudgetReservation) -> None:
        """The request was never billed (refused, 429, connection error before sending)."""
        self.settle(reservation, 0, 0)

    # -- async convenience ------------------------------------------------------------------------
    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.get_loop().call_soon_threadsafe(_set_none, fut)

    async def reserve_wait(self, est_input_tokens: int, max_output_tokens: int) -> BudgetReservation | None:
        """`reserve`, waiting while requests in flight may still free room; None once exhausted."""
        while True:
            res = self.reserve(est_input_tokens, max_output_tokens)
            if res is not None or self.exhausted:
                return res
            fut = asyncio.get_running_loop().create_future()
            with self._lock:
                if self._in_flight == 0:    # settled between our reserve and now: try again
                    continue
                self._waiters.append(fut)
            await fut


def _set_none(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)

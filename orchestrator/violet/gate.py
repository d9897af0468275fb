"""Refuse to send a request that the reconciler may already count as never sent.

A step whose create_cart or submit went unanswered is read from Violet by the next worker and,
once the step is older than its settle window (until the sender's stored bound `step_send_by`,
twice its client's total timeout from the step's start, plus the settle time, on the database's
clock), done again (decisions.py `settle_or_redo`). That is safe only if the first attempt's request
left before that bound: a worker held up past it (SIGSTOP, a stalled VM, a long pause, a row lock
delaying its intent write) must not send it afterwards. A card payment is redone at once by the
process holding the card (order_steps.py `ApplyPayment.reconcile`: a payment overwrites at Violet);
it is gated all the same, so a paused worker does not apply its card after another process moved
the checkout on. The runner sets a gate around such a call: the last
local instant its request may leave, and until when the lease is surely ours. The client checks
it at the transport, right before the first byte of the request is written (an httpcore trace
event), or right before handing the request to a transport that reports no such event.

A context variable, like calls.py and sent.py: concurrent checkouts never see each other's gate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from orchestrator.clock import local_clock

__all__ = ["SendGate", "current_gate", "send_gate"]


@dataclass(frozen=True, slots=True)
class SendGate:
    """When a gated request may still leave, on `orchestrator.clock.local_clock`."""

    #: From this instant on the step is too old: the request must not leave.
    deadline: float
    #: Until this instant the lease is surely ours; read at each check (renewals extend it).
    lease_until: Callable[[], float]

    def refusal(self) -> str | None:
        """Why the request may not leave now, or None when it may."""
        now = local_clock()
        if now >= self.deadline:
            return (
                f"not sent: the step is {now - self.deadline:.1f} s past the time its request"
                " had to leave by; recovery may already have redone it"
            )
        lease_until = self.lease_until()
        if now >= lease_until:
            return f"not sent: the lease may have expired {now - lease_until:.1f} s ago"
        return None


_gate: ContextVar[SendGate | None] = ContextVar("violet_send_gate", default=None)


@contextlib.contextmanager
def send_gate(gate: SendGate) -> Iterator[None]:
    """Gate the non-repeatable Violet requests made in this block."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


def current_gate() -> SendGate | None:
    """The gate of the call being made (None: nothing gates it)."""
    return _gate.get()

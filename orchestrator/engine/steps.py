"""One step per Violet call (or pair of calls), each with its reconcile rule (design §3).

A step's `call` does the Violet work and says what happened; its `reconcile` runs instead when a
previous attempt's outcome is unknown (a crash or a dropped answer) and decides, with read-only
probes, whether the work is already done, must be redone, or must wait. Steps never touch the
database and never change state themselves: they return a decision the runner applies.

The parts: `decisions` (the context, the decisions, error summaries, the base `Step`),
`cart_steps` (create the cart, customer, shipping) and `order_steps` (payment, price, submit).
This module is the registry the engine drives them from.
"""

from __future__ import annotations

from orchestrator.engine.cart_steps import ApplyCustomer, ApplyShipping, CreateCart
from orchestrator.engine.decisions import (
    FIRST_OUTCOME_READ_GAP,
    Advance,
    Answer,
    Decision,
    Defer,
    Fail,
    Outcome,
    OutcomeReads,
    Park,
    Pending,
    Redo,
    Step,
    StepContext,
    error_summary,
)
from orchestrator.engine.order_steps import (
    NEED_ACTION,
    NEED_CARD,
    NEED_CONFIRMATION,
    ApplyPayment,
    Price,
    Submit,
)

__all__ = [
    "FIRST_OUTCOME_READ_GAP",
    "NEED_ACTION",
    "NEED_CARD",
    "NEED_CONFIRMATION",
    "STEPS",
    "Advance",
    "Answer",
    "ApplyCustomer",
    "ApplyPayment",
    "ApplyShipping",
    "CreateCart",
    "Decision",
    "Defer",
    "Fail",
    "Outcome",
    "OutcomeReads",
    "Park",
    "Pending",
    "Price",
    "Redo",
    "Step",
    "StepContext",
    "Submit",
    "error_summary",
]

STEPS: dict[str, Step] = {
    step.name: step
    for step in (CreateCart(), ApplyCustomer(), ApplyShipping(), ApplyPayment(), Price(), Submit())
}

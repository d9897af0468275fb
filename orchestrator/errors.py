"""The library's own exception tree: each says what the caller can do about it.

`OrchestratorError` is the one root: every exception the package raises derives from it (a test
walks every module to keep it so). `VioletError` is defined here rather than in
`orchestrator.violet` so that catching it needs nothing heavier than this module; its family (by
what the caller may do: retry, reconcile, fail, re-authenticate) lives in
`orchestrator.violet.errors`, beside the code that classifies Violet's answers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from orchestrator.sensitive import printable_ref


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""


class ConfigError(OrchestratorError):
    """A setting is missing or malformed; the message names it."""


class CheckoutNotFound(OrchestratorError):
    """No checkout has this id or app_order_id."""

    @classmethod
    def for_ref(cls, ref: Any) -> CheckoutNotFound:
        """The error for a reference nothing matched; a reference that looks like a secret (a
        card number pasted as an id) is not repeated."""
        return cls(f"no checkout with id, app_order_id or Violet order id {printable_ref(ref)}")


class CheckoutBusy(OrchestratorError):
    """Another worker holds this checkout's lease; try again later (never a second Violet call)."""


class CheckoutConflict(OrchestratorError):
    """The app_order_id is already used by a checkout started with a different request (`fields`
    names where they differ); nothing was written or sent. The same request again is not a
    conflict: it returns the existing checkout."""

    def __init__(self, app_order_id: str, checkout_id: Any, fields: list[str]) -> None:
        self.app_order_id = app_order_id
        self.checkout_id = checkout_id
        self.fields = fields
        super().__init__(
            f"app_order_id {app_order_id} is already used by checkout {checkout_id} with a "
            f"different request (differs in: {', '.join(fields)}); nothing was changed. "
            "Start a new checkout under a new app_order_id"
        )


class IllegalTransition(OrchestratorError):
    """The state graph does not allow this move from the checkout's current state."""


class PaymentNotConfirmed(IllegalTransition):
    """confirm_payment() came before the shopper confirmed; the checkout keeps waiting."""


class RetryRefused(IllegalTransition):
    """A retry was refused and nothing changed: the checkout is not failed, or its failure is final
    (Violet's final word, such as a declined card); the message says why and what to do."""


class LeaseLost(OrchestratorError):
    """Our lease was taken over (fencing token moved on); our late write was refused."""


class DatabaseUnavailable(OrchestratorError):
    """The orchestrator's own database cannot be reached; nothing was marked failed."""


class SchemaNotMigrated(OrchestratorError):
    """The database has no (or an old) orchestrator schema; run `orchestrator db upgrade`."""


class OwnerRoleRequired(ConfigError):
    """The prune connected as a role without the tables' owner's privileges (the application
    role, say); it must run as the role that runs `orchestrator db upgrade`. Nothing changed."""


class InvalidRequest(OrchestratorError, ValueError):
    """A request failed validation; `fields` lists every bad field and why. Nothing was written."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        listing = "; ".join(f"{name}: {why}" for name, why in fields)
        super().__init__(f"invalid checkout request: {listing}")

    @classmethod
    def from_validation(cls, exc: Any) -> InvalidRequest:
        """Build from a pydantic ValidationError, never echoing input values (they may be cards)."""
        fields = []
        for err in exc.errors(include_input=False, include_url=False):
            # A key of the input is part of the location: a card number used as a key is not.
            parts = [printable_ref(part) for part in err["loc"]]
            # The payment union adds its tag after "payment" (payment.card.card_number): drop it.
            if len(parts) > 1 and parts[0] == "payment" and parts[1] in _UNION_TAGS:
                del parts[1]
            loc = ".".join(parts) or "request"
            message = str(err["msg"]).removeprefix("Value error, ")  # our own validators' text
            fields.append((loc, message))
        return cls(fields)


_UNION_TAGS = frozenset({"card", "token", "intent"})


Classification = Literal["retryable", "outcome_unknown", "permanent", "auth"]
"""What a Violet failure lets the caller do next (the contract with the runner)."""


class VioletError(OrchestratorError):
    """Violet failed or refused a call; the subclasses in `orchestrator.violet.errors` say what
    the caller may do next (``classification``). It lives here, beside the root, so a caller (the
    CLI among them) catches Violet's failures without importing the Violet client."""

    classification: ClassVar[Classification] = "permanent"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: dict[str, Any] | list[Any] | str | None = None,
        method: str | None = None,
        path: str | None = None,
        op: str | None = None,
        request_id: str | None = None,
        error_type: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.method = method
        self.path = path
        self.op = op
        self.request_id = request_id
        #: Violet's own type (the body's ``error``/``type``, or the first ``errors[]`` type).
        self.error_type = error_type
        #: Set when the answer is a decline: the reason (Stripe's ``decline_code``, e.g.
        #: ``insufficient_funds``), wherever in the body it was.
        self.decline_code = decline_code

    @property
    def is_decline(self) -> bool:
        """The payment was refused by the card's issuer or the provider (recorded as
        `card_declined`, whatever Violet's own type says)."""
        return self.decline_code is not None

    def __str__(self) -> str:
        where = f"{self.method} {self.path}" if self.method else (self.op or "")
        parts = [self.message]
        if where:
            parts.append(
                f"[{where} -> {self.status if self.status is not None else 'no response'}]"
            )
        if self.error_type:
            parts.append(f"type={self.error_type}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, "
            f"method={self.method!r}, path={self.path!r}, error_type={self.error_type!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments would otherwise be lost when pickled.
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[VioletError], message: str, state: dict[str, Any]) -> VioletError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err

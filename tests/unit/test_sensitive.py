"""The one specification of what is secret, and three of the layers it drives: the client's
redaction, the log handlers and (in test_request.py) request validation. The database's layer
reads the same table in tests/integration/test_schema_guards.py."""

from __future__ import annotations

import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import sensitive
from orchestrator.logs import RedactingFilter, configure_cli_logging, printable
from tests.secret_cases import CASES, TEXT_CASES, SecretCase, as_json, params


@pytest.mark.parametrize("case", params(CASES))
def test_the_specification_names_the_rule_each_case_breaks(case: SecretCase) -> None:
    found = sensitive.find_in_text(case.text) if case.text is not None else None
    if case.is_text:
        assert (found.rule.name if found else None) == case.rule
    in_json = sensitive.find_in_json(as_json(case))
    assert (in_json.rule.name if in_json else None) == case.rule


@pytest.mark.parametrize("case", params(CASES))
def test_redaction_leaves_nothing_any_layer_finds_and_ordinary_data_as_it_was(
    case: SecretCase,
) -> None:
    if case.is_text:
        assert case.text is not None
        redacted = sensitive.redact_text(case.text)
        assert sensitive.find_in_text(redacted) is None, redacted
        assert sensitive.find_in_json({"note": redacted}) is None
        for secret in case.credentials:
            assert secret not in redacted
        if case.rule is None:
            assert redacted == case.text
        else:
            assert sensitive.REDACTED in redacted
    document = sensitive.redact_json(as_json(case))
    assert sensitive.find_in_json(document) is None, document
    if case.rule is None:
        assert document == as_json(case)


def _log_through_a_handler(case: SecretCase) -> str:
    """What a handler carrying the filter writes for a log line and a traceback holding the text
    (the traceback's chained exception included), from a logger that is not the client's."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"tests.sensitive.{case.id}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("Violet said: %s", case.text)
        try:
            try:
                raise ValueError(case.text)
            except ValueError:
                # raised while handling the first: the traceback shows both, as in the runner
                raise RuntimeError("the write was refused")  # noqa: B904
        except RuntimeError:
            logger.exception("checkout 1: drive failed; left for later")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("case", params(TEXT_CASES))
def test_log_handlers_scrub_every_case_tracebacks_included(case: SecretCase) -> None:
    assert case.text is not None
    output = _log_through_a_handler(case)
    assert "Traceback" in output and "ValueError" in output  # the chained exception is there
    if case.rule is None:
        assert printable(case.text) in output
        return
    assert sensitive.find_in_text(output) is None, output
    for secret in case.credentials:
        assert secret not in output


def test_the_cli_logging_puts_the_filter_on_handlers_configured_before_it() -> None:
    """The scrubbing sits on the handlers, not on one logger: records of every logger pass it."""
    root = logging.getLogger()
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)
    root.addHandler(foreign)
    try:
        configure_cli_logging(debug=False)
        assert any(isinstance(f, RedactingFilter) for f in foreign.filters)
        logging.getLogger("orchestrator.recovery").warning("card 4242 4242 4242 4242 12 30")
        assert "4242 4242" not in stream.getvalue() and "[REDACTED] 12 30" in stream.getvalue()
    finally:
        root.removeHandler(foreign)


def _with_check_digit(payload: str) -> str:
    return next(payload + d for d in "0123456789" if sensitive.is_luhn_valid(payload + d))


@given(
    payload=st.text(alphabet="0123456789", min_size=12, max_size=18),
    tail=st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), max_size=3),
    separator=st.sampled_from([" ", "-", ".", "  ", "\t", "\u00a0", "/", " - "]),
)
def test_a_longer_run_of_groups_never_hides_a_card_number(
    payload: str, tail: list[str], separator: str
) -> None:
    number = _with_check_digit(payload)
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    text = f"Your card {separator.join(groups + tail)} was declined"
    assert sensitive.find_in_text(text) is not None
    assert number not in sensitive.redact_text(text).replace(separator, "")


def test_tokens_are_masked_while_recent_and_forgotten_after_many_rotations() -> None:
    first = "rotating-token-0000-first"
    sensitive.register_token(first)
    assert sensitive.redact_text(f"echo {first}") == f"echo {sensitive.REDACTED}"
    for n in range(20):
        sensitive.register_token(f"rotating-token-{n:04d}-later")
    assert sensitive.redact_text(f"echo {first}") == f"echo {first}"


def test_an_excerpt_never_keeps_part_of_a_credential_cut_at_its_end() -> None:
    secret = "excerpt-credential-0123456789"
    sensitive.register_credential(secret)
    text = "x" * 190 + secret + " tail"
    excerpt = sensitive.redact_excerpt(text, 200)
    assert len(excerpt) <= 200 and secret[:10] not in excerpt


def test_control_characters_are_shown_not_sent_to_the_terminal() -> None:
    hostile = "ok\x1b[2J\x1b]0;pwned\x07\u202egnp.exe\x9b31m"
    shown = printable(hostile)
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in shown)
    assert "\u202e" not in shown and "\\x1b[2J" in shown
    assert printable("two\nlines\tand tab") == "two\nlines\tand tab"
    assert printable("two\nlines", newlines=False) == "two\\x0alines"

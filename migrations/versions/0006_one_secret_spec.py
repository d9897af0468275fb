"""The tripwire applies the one specification of what is secret (orchestrator/sensitive.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Request validation, the Violet client's redaction and the log handlers apply the rules of
`orchestrator.sensitive`; this revision gives the tripwire the same rules (a frozen copy: the
regular expressions below are the module's, written in the syntax Python and PostgreSQL share;
tests/data/secret_cases.json is run against both). What changes:

- card numbers: digit groups joined by 1-3 separators of many kinds (spaces, tab, NBSP, dots,
  slashes, dashes, their full-width forms), full-width digits; only real UUIDs are exempt, so
  `ref-4111111111111111` is refused; a JSON string's `\\t`, `\\n`, `\\r` escapes are read as the
  whitespace they stand for;
- more keys: `cvc2`, `cvv2`, `csc`, `security_code`, `token`, `access_token`, `authorization`...;
  `X-Violet-*` keys follow the same rule as the others (a redacted value is accepted);
- JSON web tokens anywhere, and header lines (`X-Violet-Token: ...`, `Authorization: ...`) inside
  JSON strings as well as in text;
- `checkouts.request` keeps the payment token a token checkout resumes with (`payment.token`, a
  string): it is checked as text, not refused as a `token` key.

Findings start with the rule's name (`card_number: ...`). Cost: the same substring tests decide
whether a regular expression or the key walk runs; see docs/schema.md for the measured figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# -- the rules (frozen copy of orchestrator/sensitive.py) -----------------------------------------

DIGIT = "[0-9\\uff10-\\uff19]"
SEPARATOR = "[ \\t\\r\\n\\u00a0\\u2007\\u202f\\u3000./\\u2010-\\u2015\\u2212\\uff0d\\uff0e\\uff0f-]"
FULL_WIDTH_DIGITS = "".join(chr(0xFF10 + d) for d in range(10))
CARD_PRECHECK = f"{DIGIT}(?:{SEPARATOR}{{0,3}}{DIGIT}){{12}}"
DIGIT_RUN = f"(?<!{DIGIT}){DIGIT}+(?:{SEPARATOR}{{1,3}}{DIGIT}+)*"
UUID = "(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
JWT_PATTERN = "eyJ[A-Za-z0-9_-]{4,}\\.[A-Za-z0-9_-]{2,}\\.[A-Za-z0-9_-]*"
HEADER_NAME = "(x-violet-[a-z0-9-]+|authorization)[ \\t]*[:=][ \\t]*"
HEADER_LINE_PATTERN = f"{HEADER_NAME}(?!\\[redacted\\])[^ \\t\\r\\n<]"

CARD_KEYS = ("card_number",)
CVC_KEYS = (
    "cvc",
    "cvv",
    "cvc2",
    "cvv2",
    "csc",
    "cvn",
    "card_cvc",
    "card_cvv",
    "card_cvc2",
    "card_cvv2",
    "card_csc",
    "security_code",
    "card_security_code",
)
SECRET_KEYS = (
    "password",
    "passwd",
    "secret",
    "app_secret",
    "client_secret",
    "payment_intent_client_secret",
    "secret_key",
    "api_key",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "authorization",
    "proxy-authorization",
)

CLIENT_SECRET_FINDING = 'client_secret: a client secret ("secret" between underscores)'
JWT_FINDING = "jwt: a JSON web token"
HEADER_LINE_FINDING = "header_line: a credential header with its value (X-Violet-*, Authorization)"


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _key_anchors() -> list[str]:
    """`"key": ` for every guarded key, without those another anchor is a suffix of (the
    substring test for `"cvc": ` also finds `"card_cvc": `)."""
    anchors = {f'{key}": ' for key in (*CARD_KEYS, *CVC_KEYS, *SECRET_KEYS)}
    kept = [a for a in anchors if not any(o != a and a.endswith(o) for o in anchors)]
    return [*sorted(kept), '"x-violet-']


def _text_checks(doc: str, lowered: str) -> str:
    """The text rules, cheapest test first, in the order the Python module applies them."""
    return f"""
        IF {doc} ~ '{CARD_PRECHECK}' THEN
            finding := orchestrator_find_card_number({doc});
            IF finding IS NOT NULL THEN
                RETURN finding;
            END IF;
        END IF;
        IF strpos({lowered}, '_secret_') > 0 THEN
            RETURN '{CLIENT_SECRET_FINDING}';
        END IF;
        IF strpos({doc}, 'eyJ') > 0 AND {doc} ~ '{JWT_PATTERN}' THEN
            RETURN '{JWT_FINDING}';
        END IF;
        IF (strpos({lowered}, 'x-violet-') > 0 OR strpos({lowered}, 'authorization') > 0)
           AND {doc} ~* '{HEADER_LINE_PATTERN}' THEN
            RETURN '{HEADER_LINE_FINDING}';
        END IF;"""


FIND_CARD_NUMBER = f"""
    CREATE OR REPLACE FUNCTION orchestrator_find_card_number(doc text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        shadow text := doc;
        run text;
        groups text[];
        digits text;
    BEGIN
        IF doc !~ '{CARD_PRECHECK}' THEN
            RETURN NULL;  -- the common case: no 13 digits close together
        END IF;
        IF strpos(doc, '-') > 0 THEN
            shadow := regexp_replace(doc, '{UUID}', 'u', 'g');  -- a UUID is no card number
        END IF;
        -- Every window of whole groups with 13-19 digits, from the left, shortest first.
        FOR run IN SELECT m[1] FROM regexp_matches(shadow, '({DIGIT_RUN})', 'g') AS m LOOP
            CONTINUE WHEN length(run) < 13;
            groups := regexp_split_to_array(
                translate(run, '{FULL_WIDTH_DIGITS}', '0123456789'), '{SEPARATOR}+');
            FOR i IN 1 .. cardinality(groups) LOOP
                digits := '';
                FOR j IN i .. cardinality(groups) LOOP
                    digits := digits || groups[j];
                    EXIT WHEN length(digits) > 19;
                    IF length(digits) >= 13 AND orchestrator_luhn_valid(digits) THEN
                        RETURN format('card_number: a Luhn-valid %s-digit number', length(digits));
                    END IF;
                END LOOP;
            END LOOP;
        END LOOP;
        RETURN NULL;
    END
    $$
    """

SECRET_IN_TEXT = f"""
    CREATE OR REPLACE FUNCTION orchestrator_secret_in_text(doc text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        lowered text := lower(doc);
        finding text;
    BEGIN{_text_checks("doc", "lowered")}
        RETURN NULL;
    END
    $$
    """


def _key_anchor_tests(text: str) -> str:
    return "\n           AND ".join(f"strpos({text}, '{anchor}') = 0" for anchor in _key_anchors())


SECRET_IN_JSON = f"""
    CREATE OR REPLACE FUNCTION orchestrator_secret_in_json(doc jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        doc_text text := doc::text;
        lowered text;
        stripped text;
        finding text;
        k text;
        lk text;
        v jsonb;
    BEGIN
        -- A tab or line break inside a string is rendered as an escape: read it as whitespace.
        IF strpos(doc_text, '\\') > 0 THEN
            doc_text := replace(replace(replace(doc_text, '\\t', ' '), '\\n', ' '), '\\r', ' ');
        END IF;
        lowered := lower(doc_text);{_text_checks("doc_text", "lowered")}
        -- Plain substring tests keep bodies without a guarded key, or with only redacted ones,
        -- off the key walk below (a regular expression listing the keys costs ~20 us on a
        -- short body; the walk ~15 us); jsonb renders every key as "key": .
        IF {_key_anchor_tests("lowered")} THEN
            RETURN NULL;
        END IF;
        stripped := replace(replace(replace(lowered, '": "[redacted]"', ''), '": null', ''),
                            '": ""', '');
        IF {_key_anchor_tests("stripped")} THEN
            RETURN NULL;
        END IF;
        FOR k, v IN
            SELECT e.key, e.value
            FROM jsonb_path_query(doc, 'strict $.** ? (@.type() == "object")') AS o(obj),
                 jsonb_each(o.obj) AS e
        LOOP
            lk := lower(k);
            CONTINUE WHEN v = 'null'::jsonb OR upper(v #>> '{{}}') IN ('[REDACTED]', '');
            IF lk IN ({_sql_list(CARD_KEYS)}) THEN  -- a mask such as ****4242 is no card
                CONTINUE WHEN jsonb_typeof(v) = 'string'
                              AND v #>> '{{}}' ~ '^[*xX -]*[0-9]{{0,4}}$';
                RETURN format('secret_key: a key %s with a value', quote_literal(left(lk, 64)));
            END IF;
            IF lk IN ({_sql_list(CVC_KEYS)}) THEN
                RETURN format('cvc_key: a key %s with a value', quote_literal(left(lk, 64)));
            END IF;
            IF lk IN ({_sql_list(SECRET_KEYS)}) OR lk LIKE 'x-violet-%' THEN
                RETURN format('secret_key: a key %s with a value', quote_literal(left(lk, 64)));
            END IF;
        END LOOP;
        RETURN NULL;
    END
    $$
    """

# `checkouts.request` of a token checkout holds the payment token it resumes with: the one
# secret-named value kept on purpose. It is checked as text; the rest of the request as JSON.
TRIPWIRE_CHECKOUTS = """
    CREATE OR REPLACE FUNCTION orchestrator_tripwire_checkouts() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        finding text;
    BEGIN
        IF TG_OP = 'INSERT' OR NEW.request IS DISTINCT FROM OLD.request THEN
            IF jsonb_typeof(NEW.request #> '{payment,token}') = 'string' THEN
                finding := coalesce(
                    orchestrator_secret_in_text(NEW.request #>> '{payment,token}'),
                    orchestrator_secret_in_json(NEW.request #- '{payment,token}'));
            ELSE
                finding := orchestrator_secret_in_json(NEW.request);
            END IF;
            IF finding IS NOT NULL THEN
                PERFORM orchestrator_tripwire_fail('checkouts.request', finding);
            END IF;
        END IF;
        IF TG_OP = 'INSERT' OR NEW.bags IS DISTINCT FROM OLD.bags THEN
            finding := orchestrator_secret_in_json(NEW.bags);
            IF finding IS NOT NULL THEN
                PERFORM orchestrator_tripwire_fail('checkouts.bags', finding);
            END IF;
        END IF;
        IF TG_OP = 'INSERT' OR NEW.last_error IS DISTINCT FROM OLD.last_error THEN
            finding := orchestrator_secret_in_json(NEW.last_error);
            IF finding IS NOT NULL THEN
                PERFORM orchestrator_tripwire_fail('checkouts.last_error', finding);
            END IF;
        END IF;
        RETURN NEW;
    END
    $$
    """

# -- the rules of revision 0001, restored by downgrade (frozen copies) --------------------------

_OLD_SECRET_KEYS = (
    "card_number",
    "card_cvc",
    "cvc",
    "cvv",
    "password",
    "app_secret",
    "refresh_token",
    "client_secret",
    "payment_intent_client_secret",
)
_OLD_SUSPECT_KEY_TESTS = "\n           AND ".join(
    f"strpos(stripped, '\"{key}\": ') = 0" for key in _OLD_SECRET_KEYS
)

OLD_FIND_CARD_NUMBER = r"""
    CREATE OR REPLACE FUNCTION orchestrator_find_card_number(doc text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        run text;
        groups text[];
        digits text;
    BEGIN
        IF doc !~ '[0-9](?:[ -]?[0-9]){12}' THEN
            RETURN NULL;  -- the common case: no run of 13+ digits at all
        END IF;
        FOR run IN
            SELECT m[1] FROM regexp_matches(
                doc,
                '(?<![0-9])(?<![0-9A-Fa-f]-)([0-9]+(?:[ -][0-9]+)*)(?![0-9])(?!-[0-9A-Fa-f])',
                'g') AS m
        LOOP
            CONTINUE WHEN length(run) < 13;
            groups := string_to_array(translate(run, '-', ' '), ' ');
            FOR i IN 1 .. cardinality(groups) LOOP
                digits := '';
                FOR j IN i .. cardinality(groups) LOOP
                    digits := digits || groups[j];
                    EXIT WHEN length(digits) > 19;
                    IF length(digits) >= 13 AND orchestrator_luhn_valid(digits) THEN
                        RETURN format('a Luhn-valid %s-digit number (a card number?)',
                                      length(digits));
                    END IF;
                END LOOP;
            END LOOP;
        END LOOP;
        RETURN NULL;
    END
    $$
    """

OLD_SECRET_IN_TEXT = r"""
    CREATE OR REPLACE FUNCTION orchestrator_secret_in_text(doc text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        finding text := orchestrator_find_card_number(doc);
    BEGIN
        IF finding IS NOT NULL THEN
            RETURN finding;
        END IF;
        IF strpos(lower(doc), '_secret_') > 0 THEN
            RETURN 'a string containing "_secret_" (a client secret?)';
        END IF;
        IF doc ~* 'x-violet-[a-z0-9-]+\s*[:=]\s*\S' THEN
            RETURN 'an X-Violet-* header with its value';
        END IF;
        RETURN NULL;
    END
    $$
    """

OLD_SECRET_IN_JSON = rf"""
    CREATE OR REPLACE FUNCTION orchestrator_secret_in_json(doc jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        doc_text text := doc::text;
        lowered text := lower(doc_text);
        finding text := orchestrator_find_card_number(doc_text);
        stripped text;
        k text;
        v jsonb;
    BEGIN
        IF finding IS NOT NULL THEN
            RETURN finding;
        END IF;
        IF strpos(lowered, '_secret_') > 0 THEN
            RETURN 'a string containing "_secret_" (a client secret?)';
        END IF;
        stripped := replace(replace(replace(lowered, '": "[redacted]"', ''), '": null', ''),
                            '": ""', '');
        IF {_OLD_SUSPECT_KEY_TESTS}
           AND strpos(stripped, '"x-violet-') = 0 THEN
            RETURN NULL;
        END IF;
        FOR k, v IN
            SELECT e.key, e.value
            FROM jsonb_path_query(doc, 'strict $.** ? (@.type() == "object")') AS o(obj),
                 jsonb_each(o.obj) AS e
        LOOP
            IF lower(k) LIKE 'x-violet-%' THEN
                RETURN format('an X-Violet-* header key %s', quote_literal(left(k, 64)));
            END IF;
            IF lower(k) IN ({_sql_list(_OLD_SECRET_KEYS)})
               AND v <> 'null'::jsonb
               AND upper(v #>> '{{}}') NOT IN ('[REDACTED]', '')
               AND NOT (lower(k) = 'card_number' AND jsonb_typeof(v) = 'string'
                        AND v #>> '{{}}' ~ '^[*xX -]*[0-9]{{0,4}}$')
            THEN
                RETURN format('a key %s whose value is not "[REDACTED]"', quote_literal(lower(k)));
            END IF;
        END LOOP;
        RETURN NULL;
    END
    $$
    """

OLD_TRIPWIRE_CHECKOUTS = """
    CREATE OR REPLACE FUNCTION orchestrator_tripwire_checkouts() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        finding text;
    BEGIN
        IF TG_OP = 'INSERT' OR NEW.request IS DISTINCT FROM OLD.request THEN
        finding := orchestrator_secret_in_json(NEW.request);
        IF finding IS NOT NULL THEN
            PERFORM orchestrator_tripwire_fail('checkouts.request', finding);
        END IF;
        END IF;
        IF TG_OP = 'INSERT' OR NEW.bags IS DISTINCT FROM OLD.bags THEN
        finding := orchestrator_secret_in_json(NEW.bags);
        IF finding IS NOT NULL THEN
            PERFORM orchestrator_tripwire_fail('checkouts.bags', finding);
        END IF;
        END IF;
        IF TG_OP = 'INSERT' OR NEW.last_error IS DISTINCT FROM OLD.last_error THEN
        finding := orchestrator_secret_in_json(NEW.last_error);
        IF finding IS NOT NULL THEN
            PERFORM orchestrator_tripwire_fail('checkouts.last_error', finding);
        END IF;
        END IF;
        RETURN NEW;
    END
    $$
    """


def upgrade() -> None:
    for statement in (FIND_CARD_NUMBER, SECRET_IN_TEXT, SECRET_IN_JSON, TRIPWIRE_CHECKOUTS):
        op.execute(statement)


def downgrade() -> None:
    for statement in (
        OLD_FIND_CARD_NUMBER,
        OLD_SECRET_IN_TEXT,
        OLD_SECRET_IN_JSON,
        OLD_TRIPWIRE_CHECKOUTS,
    ):
        op.execute(statement)

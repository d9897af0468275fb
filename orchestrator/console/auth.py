"""Who is asking: the console's principals, from settings' basic-auth users and bearer tokens.

Secrets are compared as SHA-256 digests with `hmac.compare_digest`, against every configured
login without stopping at a match, so neither a secret nor which name exists shows in the time
an answer takes. With no login configured the console trusts only this machine: the request
must come from a loopback address and name a loopback host (a DNS name pointing a browser at
127.0.0.1 is refused), and then the local user is an operator.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from orchestrator.config import ConsoleLogin

__all__ = [
    "OPERATOR",
    "VIEWER",
    "Authenticator",
    "Principal",
    "is_loopback_host",
]

VIEWER: Final = "viewer"
OPERATOR: Final = "operator"
REALM: Final = "orchestrator console"
_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone the console let in: a configured login, or the local user."""

    name: str
    role: str
    via: str  # "basic", "bearer" or "local"

    @property
    def may_act(self) -> bool:
        return self.role == OPERATOR

    @property
    def actor(self) -> str:
        """How the audit trail names this person's actions."""
        return f"console:{self.name}"


def is_loopback_host(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 (with or without brackets); any other name is not."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_part(host_header: str) -> str:
    """The host of a Host header, without its port (`[::1]:8470` -> `::1`)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class _Known:
    login: ConsoleLogin
    name_digest: bytes
    secret_digest: bytes


class Authenticator:
    """Turns a request's Authorization header (or, with nothing configured, its origin on this
    machine) into a `Principal`, or None."""

    def __init__(
        self, users: Sequence[ConsoleLogin] = (), tokens: Sequence[ConsoleLogin] = ()
    ) -> None:
        self._users = [self._known(login) for login in users]
        self._tokens = [self._known(login) for login in tokens]
        self._local = Principal(f"{_os_user()}@localhost", OPERATOR, "local")

    @staticmethod
    def _known(login: ConsoleLogin) -> _Known:
        return _Known(login, _digest(login.name), _digest(login.secret.get_secret_value()))

    @property
    def configured(self) -> bool:
        return bool(self._users or self._tokens)

    @property
    def schemes(self) -> list[str]:
        """The `WWW-Authenticate` challenges a refused request is answered with."""
        challenges = []
        if self._users:
            challenges.append(f'Basic realm="{REALM}", charset="UTF-8"')
        if self._tokens:
            challenges.append(f'Bearer realm="{REALM}"')
        return challenges

    def identify(
        self, authorization: str | None, *, client_host: str | None, host_header: str
    ) -> Principal | None:
        """The principal of a request, or None (refused: the caller answers 401 or 403)."""
        if not self.configured:
            local = (
                client_host is not None
                and is_loopback_host(client_host)
                and is_loopback_host(_host_part(host_header))
            )
            return self._local if local else None
        if not authorization:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._tokens:
            return self._match(self._tokens, None, credentials.strip(), "bearer")
        if scheme == "basic" and self._users:
            decoded = _basic(credentials.strip())
            if decoded is None:
                return None
            return self._match(self._users, *decoded, "basic")
        return None

    @staticmethod
    def _match(
        known: Sequence[_Known], name: str | None, secret: str, via: str
    ) -> Principal | None:
        """The login `name` (any, for a token) whose secret is `secret`; every login is compared,
        so the time taken does not depend on which one matched."""
        secret_digest = _digest(secret)
        name_digest = _digest(name) if name is not None else b""
        found: ConsoleLogin | None = None
        for entry in known:
            same_secret = hmac.compare_digest(entry.secret_digest, secret_digest)
            same_name = name is None or hmac.compare_digest(entry.name_digest, name_digest)
            if same_secret and same_name and found is None:
                found = entry.login
        if found is None:
            return None
        return Principal(found.name, found.role, via)


def _basic(credentials: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "local"

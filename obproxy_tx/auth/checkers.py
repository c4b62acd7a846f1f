"""
Credentials checkers for MySQL logins.

L{InMemoryMySQLChecker} keeps users in a dict: each user has a plaintext
password, or only a C{mysql_native_password} verifier as MySQL stores it
(C{*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9}), and the authentication plugin
the server should ask for. It checks every credentials class of
L{obproxy_tx.auth.credentials} and emulates MySQL's C{caching_sha2_password}
cache: a successful full authentication fills it, after which the fast path
works.
"""

from __future__ import annotations

import hmac
from typing import Any, Mapping

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from obproxy_tx.auth.credentials import (
    ICachingSHA2Credentials,
    IMySQLClearPasswordCredentials,
    IMySQLCredentials,
    IMySQLScrambleCredentials,
    sha2_digest,
)
from obproxy_tx.wire import scramble as _scramble
from obproxy_tx.wire.constants import MYSQL_NATIVE_PASSWORD


@attrs.frozen
class MySQLUser:
    """
    One user known to L{InMemoryMySQLChecker}.

    @ivar name: the user name.
    @ivar password: the plaintext password, or C{None} when only a verifier is known.
    @ivar native_verifier: C{SHA1(SHA1(password))} (20 bytes; empty for an empty password).
    @ivar plugin: the authentication plugin the server asks this user for.
    """

    name: str
    password: bytes | None
    native_verifier: bytes
    plugin: str = MYSQL_NATIVE_PASSWORD


def parse_verifier(verifier: str | bytes) -> bytes:
    """
    Turn a stored native-password verifier into its 20 raw bytes.

    @param verifier: C{"*HEX"} as MySQL stores it (41 characters), the same
        without the star, 20 raw bytes, or empty for an empty password.
    @return: 20 bytes, or C{b""} for an empty password.
    @raise ValueError: if it is none of these.
    """
    if isinstance(verifier, bytes):
        if len(verifier) in (0, 20):
            return verifier
        verifier = verifier.decode("ascii")
    if verifier == "":
        return b""
    if not verifier.startswith("*"):
        verifier = "*" + verifier
    if len(verifier) != 41:
        raise ValueError(f"not a mysql_native_password verifier: {verifier!r}")
    return _scramble.verifier_from_hex(verifier)


@implementer(ICredentialsChecker)
class InMemoryMySQLChecker:
    """
    Check MySQL credentials against users held in memory.

    @ivar credentialInterfaces: the credentials this checker understands.
    """

    credentialInterfaces = (  # noqa: N815
        IMySQLScrambleCredentials,
        ICachingSHA2Credentials,
        IMySQLClearPasswordCredentials,
    )
    _log = Logger()

    def __init__(self, prefill_sha2_cache: bool = True) -> None:
        """
        @param prefill_sha2_cache: whether users added with a plaintext password
            start in the C{caching_sha2_password} cache (so the fast path works
            at once); when C{False}, as in MySQL after a restart, the first login
            of each user needs full authentication.
        """
        self._users: dict[str, MySQLUser] = {}
        self._sha2_cache: dict[str, bytes] = {}
        self._prefill = prefill_sha2_cache

    def add_user(
        self,
        name: str,
        password: str | bytes | None = None,
        *,
        native_verifier: str | bytes | None = None,
        plugin: str = MYSQL_NATIVE_PASSWORD,
    ) -> MySQLUser:
        """
        Add or replace a user.

        @param name: the user name.
        @param password: the plaintext password (C{""} for none).
        @param native_verifier: instead of the password, its stored verifier
            (C{"*HEX"}); such a user can log in with C{mysql_native_password},
            or with a password sent in full (clear password or caching_sha2
            full authentication).
        @param plugin: the plugin the server asks for (C{mysql_native_password},
            C{caching_sha2_password} or C{mysql_clear_password}).
        @return: the stored L{MySQLUser}.
        @raise ValueError: when neither or both of C{password} and
            C{native_verifier} are given.
        """
        if (password is None) == (native_verifier is None):
            raise ValueError("give exactly one of password and native_verifier")
        if password is not None:
            raw = password.encode("utf-8") if isinstance(password, str) else password
            verifier = _scramble.native_password_verifier(raw) if raw else b""
            user = MySQLUser(name, raw, verifier, plugin)
        else:
            assert native_verifier is not None  # for mypy: checked above
            user = MySQLUser(name, None, parse_verifier(native_verifier), plugin)
        self._users[name] = user
        self._sha2_cache.pop(name, None)
        if self._prefill and user.password is not None:
            self._sha2_cache[name] = sha2_digest(user.password)
        return user

    @classmethod
    def from_mapping(
        cls, users: Mapping[str, str | bytes], plugin: str = MYSQL_NATIVE_PASSWORD
    ) -> InMemoryMySQLChecker:
        """
        Build a checker from C{{user: password}}; values starting with C{*} and
        41 characters long are taken as native-password verifiers.

        @param users: user names to passwords or verifiers.
        @param plugin: the plugin for every user.
        @return: a new checker.
        """
        checker = cls()
        for name, secret in users.items():
            text = secret.decode("utf-8") if isinstance(secret, bytes) else secret
            if text.startswith("*") and len(text) == 41:
                checker.add_user(name, native_verifier=text, plugin=plugin)
            else:
                checker.add_user(name, text, plugin=plugin)
        return checker

    def get_user(self, name: str) -> MySQLUser | None:
        """
        @param name: a user name.
        @return: the user, or C{None} when unknown.
        """
        return self._users.get(name)

    def plugin_for(self, name: str) -> str | None:
        """
        Return the authentication plugin configured for a user (the server's
        C{auth_plugin_for} hook).

        @param name: a user name.
        @return: the plugin name, or C{None} for an unknown user.
        """
        user = self._users.get(name)
        return None if user is None else user.plugin

    def forget_sha2_cache(self) -> None:
        """
        Empty the C{caching_sha2_password} cache (as C{FLUSH PRIVILEGES} does).
        """
        self._sha2_cache.clear()

    def requestAvatarId(self, credentials: IMySQLCredentials) -> defer.Deferred[Any]:  # noqa: N802
        """
        Verify credentials.

        @param credentials: one of L{credentialInterfaces}.
        @return: a Deferred firing with the user name, or failing with
            L{UnauthorizedLogin<twisted.cred.error.UnauthorizedLogin>}.
        """
        try:
            return defer.succeed(self._check(credentials))
        except UnauthorizedLogin:
            return defer.fail()

    def _check(self, credentials: IMySQLCredentials) -> str:
        user = self._users.get(credentials.username)
        if user is None:
            raise UnauthorizedLogin(f"unknown user {credentials.username!r}")
        if IMySQLScrambleCredentials.providedBy(credentials):
            if credentials.checkVerifier(user.native_verifier):
                return user.name
        elif ICachingSHA2Credentials.providedBy(credentials):
            cached = self._sha2_cache.get(user.name)
            if cached is not None and credentials.checkDigest(cached):
                return user.name
        elif IMySQLClearPasswordCredentials.providedBy(credentials):
            if not credentials.protected:
                raise UnauthorizedLogin("refusing a password sent in clear without TLS")
            if self._check_clear(user, credentials.password):
                if credentials.password:
                    self._sha2_cache[user.name] = sha2_digest(credentials.password)
                return user.name
        raise UnauthorizedLogin(f"bad credentials for {credentials.username!r}")

    @staticmethod
    def _check_clear(user: MySQLUser, password: bytes) -> bool:
        if user.password is not None:
            return hmac.compare_digest(user.password, password)
        if not password:
            return user.native_verifier == b""
        if not user.native_verifier:
            return False
        return hmac.compare_digest(
            _scramble.native_password_verifier(password), user.native_verifier
        )

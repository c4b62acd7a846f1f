"""
Credentials: what a MySQL client proved during the connection phase.

Each MySQL authentication method becomes one L{twisted.cred} credentials class.
The server protocol builds one from the client's answer and hands it to a
L{twisted.cred.portal.Portal}; a checker supplies the stored secret and asks
the credentials to verify themselves (the L{CramMD5Credentials
<twisted.cred.credentials.CramMD5Credentials>} pattern):

  - L{NativePasswordCredentials} (C{mysql_native_password}): a scramble answer,
    verified against the stored C{SHA1(SHA1(password))} verifier; on success
    the recovered C{SHA1(password)} (C{stage1}) is kept so a proxy can answer
    any backend's scramble without knowing the password.
  - L{CachingSHA2Credentials} (C{caching_sha2_password} fast path): a scramble
    answer verified against the cached C{SHA256(SHA256(password))} digest.
  - L{ClearPasswordCredentials} (C{mysql_clear_password}, and the full
    authentication of C{caching_sha2_password}): the password itself, with
    C{protected} telling whether TLS or RSA kept it off the wire in clear.
"""

from __future__ import annotations

import hmac

from twisted.cred.credentials import ICredentials, IUsernamePassword
from zope.interface import Attribute, implementer

from obproxy_tx.wire import scramble as _scramble
from obproxy_tx.wire.constants import (
    CACHING_SHA2_PASSWORD,
    MYSQL_CLEAR_PASSWORD,
    MYSQL_NATIVE_PASSWORD,
)


class IMySQLCredentials(ICredentials):
    """
    Credentials presented by a MySQL client.
    """

    username = Attribute("The user name the client logged in as (C{str}).")
    plugin_name = Attribute("The authentication plugin that produced these credentials (C{str}).")


class IMySQLScrambleCredentials(IMySQLCredentials):
    """
    A C{mysql_native_password} answer to the server's scramble.
    """

    scramble = Attribute("The 20-byte scramble the server sent (C{bytes}).")
    response = Attribute("The client's answer (C{bytes}; empty for an empty password).")
    stage1 = Attribute(
        "C{SHA1(password)} recovered by a successful L{checkVerifier} or "
        "L{checkPassword}, else C{None}."
    )

    def checkVerifier(verifier: bytes) -> bool:  # noqa: N802,N805
        """
        Check the answer against a stored C{SHA1(SHA1(password))} verifier.

        @param verifier: the 20-byte stage-2 hash (empty for an empty password).
        @return: whether the client knew the password.
        """

    def checkPassword(password: bytes) -> bool:  # noqa: N802,N805
        """
        Check the answer against a plaintext password.

        @param password: the password.
        @return: whether the client knew it.
        """


class ICachingSHA2Credentials(IMySQLCredentials):
    """
    A C{caching_sha2_password} fast-path answer to the server's scramble.
    """

    scramble = Attribute("The 20-byte scramble the server sent (C{bytes}).")
    response = Attribute("The client's 32-byte answer (C{bytes}).")

    def checkDigest(digest: bytes) -> bool:  # noqa: N802,N805
        """
        Check the answer against the cached C{SHA256(SHA256(password))}.

        @param digest: the cached 32-byte digest.
        @return: whether the client knew the password.
        """

    def checkPassword(password: bytes) -> bool:  # noqa: N802,N805
        """
        Check the answer against a plaintext password.

        @param password: the password.
        @return: whether the client knew it.
        """


class IMySQLClearPasswordCredentials(IMySQLCredentials, IUsernamePassword):
    """
    A password the client sent itself (C{mysql_clear_password}, or the full
    authentication of C{caching_sha2_password}).
    """

    protected = Attribute(
        "Whether TLS or RSA encryption kept the password from crossing the "
        "network in clear (C{bool}); checkers refuse unprotected passwords."
    )


def sha2_digest(password: bytes) -> bytes:
    """
    Return C{SHA256(SHA256(password))}, the digest C{caching_sha2_password}
    keeps in its cache (C{b""} for an empty password).

    @param password: the password.
    @return: a 32-byte digest, or C{b""}.
    """
    return _scramble.caching_sha2_digest(password)


@implementer(IMySQLScrambleCredentials)
class NativePasswordCredentials:
    """
    A C{mysql_native_password} scramble answer.

    @ivar username: the user name.
    @ivar scramble: the scramble the server sent.
    @ivar response: the client's answer.
    @ivar stage1: C{SHA1(password)} once a check succeeded, else C{None}.
    @ivar plugin_name: C{"mysql_native_password"}.
    """

    plugin_name = MYSQL_NATIVE_PASSWORD

    def __init__(self, username: str, scramble: bytes, response: bytes) -> None:
        self.username = username
        self.scramble = scramble
        self.response = response
        self.stage1: bytes | None = None

    def checkVerifier(self, verifier: bytes) -> bool:  # noqa: N802
        """
        Check the answer against a stored C{SHA1(SHA1(password))} verifier and
        remember the recovered C{SHA1(password)}.

        @param verifier: the 20-byte stage-2 hash (empty for an empty password).
        @return: whether the client knew the password.
        """
        stage1 = _scramble.check_native_password(self.scramble, self.response, verifier)
        if stage1 is None:
            return False
        self.stage1 = stage1
        return True

    def checkPassword(self, password: bytes) -> bool:  # noqa: N802
        """
        Check the answer against a plaintext password.

        @param password: the password.
        @return: whether the client knew it.
        """
        verifier = _scramble.native_password_verifier(password) if password else b""
        return self.checkVerifier(verifier)

    def __repr__(self) -> str:
        return f"<NativePasswordCredentials user={self.username!r}>"


@implementer(ICachingSHA2Credentials)
class CachingSHA2Credentials:
    """
    A C{caching_sha2_password} fast-path answer.

    The answer is C{SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble)},
    checked by L{obproxy_tx.wire.scramble.caching_sha2_check}.

    @ivar username: the user name.
    @ivar scramble: the scramble the server sent.
    @ivar response: the client's answer.
    @ivar plugin_name: C{"caching_sha2_password"}.
    """

    plugin_name = CACHING_SHA2_PASSWORD

    def __init__(self, username: str, scramble: bytes, response: bytes) -> None:
        self.username = username
        self.scramble = scramble
        self.response = response

    def checkDigest(self, digest: bytes) -> bool:  # noqa: N802
        """
        Check the answer against the cached C{SHA256(SHA256(password))}.

        @param digest: the cached 32-byte digest.
        @return: whether the client knew the password.
        """
        return _scramble.caching_sha2_check(self.scramble, self.response, digest) is not None

    def checkPassword(self, password: bytes) -> bool:  # noqa: N802
        """
        Check the answer against a plaintext password.

        @param password: the password.
        @return: whether the client knew it.
        """
        return self.checkDigest(sha2_digest(password))

    def __repr__(self) -> str:
        return f"<CachingSHA2Credentials user={self.username!r}>"


@implementer(IMySQLClearPasswordCredentials)
class ClearPasswordCredentials:
    """
    A password the client sent itself.

    @ivar username: the user name.
    @ivar password: the password (C{bytes}).
    @ivar protected: whether TLS or RSA protected it on the wire.
    @ivar plugin_name: the plugin that carried it (C{mysql_clear_password} or
        C{caching_sha2_password} full authentication).
    """

    def __init__(
        self,
        username: str,
        password: bytes,
        protected: bool,
        plugin_name: str = MYSQL_CLEAR_PASSWORD,
    ) -> None:
        self.username = username
        self.password = password
        self.protected = protected
        self.plugin_name = plugin_name

    def checkPassword(self, password: bytes) -> bool:  # noqa: N802
        """
        Compare with a plaintext password in constant time.

        @param password: the stored password.
        @return: whether they match.
        """
        return hmac.compare_digest(self.password, password)

    def __repr__(self) -> str:
        return (
            f"<ClearPasswordCredentials user={self.username!r} "
            f"plugin={self.plugin_name!r} protected={self.protected}>"
        )

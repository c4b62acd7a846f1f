"""
Tests for L{obproxy_tx.auth}: credentials, the in-memory checker and the realm.
"""

from __future__ import annotations

import hashlib

import pytest
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from obproxy_tx.auth import (
    CachingSHA2Credentials,
    ClearPasswordCredentials,
    ICachingSHA2Credentials,
    IMySQLClearPasswordCredentials,
    IMySQLScrambleCredentials,
    InMemoryMySQLChecker,
    MySQLRealm,
    NativePasswordCredentials,
    parse_verifier,
    sha2_digest,
)
from obproxy_tx.protocol.interfaces import ConnectionInfo, IMySQLSession
from obproxy_tx.wire.constants import CACHING_SHA2_PASSWORD

SCRAMBLE = bytes(range(1, 21))


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def native_answer(password: bytes, scramble: bytes = SCRAMBLE) -> bytes:
    """The mysql_native_password answer, computed independently of the code under test."""
    if not password:
        return b""
    stage1 = _sha1(password)
    mask = _sha1(scramble + _sha1(stage1))
    return bytes(a ^ b for a, b in zip(stage1, mask))


def sha2_answer(password: bytes, scramble: bytes = SCRAMBLE) -> bytes:
    """The caching_sha2_password fast-path answer, computed independently."""
    one = hashlib.sha256(password).digest()
    two = hashlib.sha256(one).digest()
    mask = hashlib.sha256(two + scramble).digest()
    return bytes(a ^ b for a, b in zip(one, mask))


def result_of(deferred: Deferred) -> object:
    """Return what an already-fired Deferred holds (a Failure if it failed)."""
    results: list[object] = []
    deferred.addBoth(results.append)
    assert results, "Deferred has not fired"
    return results[0]


def test_interfaces_are_provided() -> None:
    """Each credentials class, the checker and the realm provide their interfaces."""
    assert verifyClass(IMySQLScrambleCredentials, NativePasswordCredentials)
    assert verifyClass(ICachingSHA2Credentials, CachingSHA2Credentials)
    assert verifyClass(IMySQLClearPasswordCredentials, ClearPasswordCredentials)
    assert verifyObject(IMySQLScrambleCredentials, NativePasswordCredentials("u", SCRAMBLE, b""))
    assert verifyObject(ICredentialsChecker, InMemoryMySQLChecker())
    assert verifyObject(IRealm, MySQLRealm(lambda user, info: None))  # type: ignore[arg-type,return-value]


def test_native_credentials_recover_stage1() -> None:
    """A right native answer checks against the verifier and exposes SHA1(password)."""
    verifier = _sha1(_sha1(b"secret"))
    credentials = NativePasswordCredentials("u", SCRAMBLE, native_answer(b"secret"))
    assert credentials.checkVerifier(verifier)
    assert credentials.stage1 == _sha1(b"secret")


def test_native_credentials_wrong_password() -> None:
    """A wrong native answer fails and recovers nothing."""
    credentials = NativePasswordCredentials("u", SCRAMBLE, native_answer(b"wrong"))
    assert not credentials.checkPassword(b"secret")
    assert credentials.stage1 is None


def test_native_empty_password() -> None:
    """An empty password accepts only an empty answer."""
    assert NativePasswordCredentials("u", SCRAMBLE, b"").checkPassword(b"")
    assert not NativePasswordCredentials("u", SCRAMBLE, native_answer(b"x")).checkPassword(b"")
    assert not NativePasswordCredentials("u", SCRAMBLE, b"").checkPassword(b"x")


def test_caching_sha2_credentials() -> None:
    """The fast-path answer checks against SHA256(SHA256(password)) and nothing else."""
    good = CachingSHA2Credentials("u", SCRAMBLE, sha2_answer(b"pw"))
    assert good.checkDigest(sha2_digest(b"pw"))
    assert good.checkPassword(b"pw")
    assert not good.checkDigest(sha2_digest(b"other"))
    assert not CachingSHA2Credentials("u", SCRAMBLE, b"short").checkPassword(b"pw")


def test_parse_verifier_forms() -> None:
    """Verifiers are accepted as *HEX, HEX, raw bytes or empty."""
    raw = _sha1(_sha1(b"pw"))
    text = "*" + raw.hex().upper()
    assert parse_verifier(text) == raw
    assert parse_verifier(text[1:]) == raw
    assert parse_verifier(raw) == raw
    assert parse_verifier("") == b""
    with pytest.raises(ValueError):
        parse_verifier("*1234")


def test_checker_native_with_verifier_only() -> None:
    """A user stored as a *HEX verifier logs in with native auth; the stage1 is recovered."""
    checker = InMemoryMySQLChecker()
    checker.add_user("u", native_verifier="*" + _sha1(_sha1(b"pw")).hex().upper())
    credentials = NativePasswordCredentials("u", SCRAMBLE, native_answer(b"pw"))
    assert result_of(checker.requestAvatarId(credentials)) == "u"
    assert credentials.stage1 == _sha1(b"pw")
    bad = result_of(
        checker.requestAvatarId(NativePasswordCredentials("u", SCRAMBLE, native_answer(b"no")))
    )
    assert isinstance(bad, Failure) and bad.check(UnauthorizedLogin)


def test_checker_unknown_user() -> None:
    """An unknown user is refused."""
    checker = InMemoryMySQLChecker.from_mapping({"a": "b"})
    failure = result_of(checker.requestAvatarId(NativePasswordCredentials("zz", SCRAMBLE, b"")))
    assert isinstance(failure, Failure) and failure.check(UnauthorizedLogin)


def test_checker_sha2_cache() -> None:
    """Without a prefilled cache the fast path fails until a full authentication fills it."""
    checker = InMemoryMySQLChecker(prefill_sha2_cache=False)
    checker.add_user("s", "pw", plugin=CACHING_SHA2_PASSWORD)
    assert checker.plugin_for("s") == CACHING_SHA2_PASSWORD
    fast = CachingSHA2Credentials("s", SCRAMBLE, sha2_answer(b"pw"))
    assert isinstance(result_of(checker.requestAvatarId(fast)), Failure)
    full = ClearPasswordCredentials("s", b"pw", True, CACHING_SHA2_PASSWORD)
    assert result_of(checker.requestAvatarId(full)) == "s"
    assert result_of(checker.requestAvatarId(fast)) == "s"
    checker.forget_sha2_cache()
    assert isinstance(result_of(checker.requestAvatarId(fast)), Failure)


def test_checker_clear_password_needs_protection() -> None:
    """A clear password is refused unless TLS or RSA protected it, even when right."""
    checker = InMemoryMySQLChecker.from_mapping({"c": "pw"})
    assert result_of(checker.requestAvatarId(ClearPasswordCredentials("c", b"pw", True))) == "c"
    refused = result_of(checker.requestAvatarId(ClearPasswordCredentials("c", b"pw", False)))
    assert isinstance(refused, Failure) and refused.check(UnauthorizedLogin)
    wrong = result_of(checker.requestAvatarId(ClearPasswordCredentials("c", b"no", True)))
    assert isinstance(wrong, Failure)


def test_checker_clear_password_against_verifier() -> None:
    """A full password is checked against a native verifier when no plaintext is stored."""
    checker = InMemoryMySQLChecker.from_mapping({"v": "*" + _sha1(_sha1(b"pw")).hex()})
    assert result_of(checker.requestAvatarId(ClearPasswordCredentials("v", b"pw", True))) == "v"
    assert isinstance(
        result_of(checker.requestAvatarId(ClearPasswordCredentials("v", b"x", True))), Failure
    )


def test_add_user_needs_one_secret() -> None:
    """add_user wants exactly one of a password and a verifier."""
    checker = InMemoryMySQLChecker()
    with pytest.raises(ValueError):
        checker.add_user("u")
    with pytest.raises(ValueError):
        checker.add_user("u", "pw", native_verifier="")


@implementer(IMySQLSession)
class _Session:
    def __init__(self, user: str, info: ConnectionInfo) -> None:
        self.user = user
        self.info = info
        self.closed = False

    def query(self, sql: str) -> None:
        return None

    def init_db(self, schema: str) -> None:
        return None

    def reset(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def test_portal_login_through_realm() -> None:
    """A portal with the checker and realm returns a session bound to the connection info."""
    checker = InMemoryMySQLChecker.from_mapping({"u": "pw"})
    portal = Portal(MySQLRealm(_Session), [checker])
    info = ConnectionInfo(connection_id=7)
    login = result_of(
        portal.login(
            NativePasswordCredentials("u", SCRAMBLE, native_answer(b"pw")), info, IMySQLSession
        )
    )
    assert isinstance(login, tuple)
    interface, session, logout = login
    assert interface is IMySQLSession
    assert verifyObject(IMySQLSession, session)
    assert session.user == "u" and session.info is info
    logout()
    assert session.closed


def test_realm_refuses_other_interfaces() -> None:
    """The realm only hands out IMySQLSession avatars."""
    with pytest.raises(NotImplementedError):
        MySQLRealm(_Session).requestAvatar("u", None, IRealm)

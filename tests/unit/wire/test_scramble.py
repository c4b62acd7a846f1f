"""
Tests for L{obproxy_tx.wire.scramble}.
"""

from __future__ import annotations

import hashlib
import itertools

import pymysql._auth as pymysql_auth
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from obproxy_tx.wire import scramble as s

SCRAMBLE = b"gW_Wvj3^^=Ur`hk_{n7c"
OTHER_SCRAMBLE = b"aaaaaaaabbbbbbbbbbbb"


def test_generate_scramble_printable_safe() -> None:
    """Scrambles are 20 bytes of 7-bit data without NUL or '$', even from adversarial rng."""
    for fill in (0x00, 0x24, 0x80, 0xA4, 0xFF):
        value = s.generate_scramble(lambda n, fill=fill: bytes([fill]) * n)
        assert len(value) == 20
        assert b"\x00" not in value and b"$" not in value
        assert max(value) < 0x80
    every = bytes(range(256))
    mapped = every.translate(s._SCRAMBLE_TABLE)
    assert b"\x00" not in mapped and b"$" not in mapped


def test_generate_scramble_random() -> None:
    """The default rng gives different scrambles."""
    assert s.generate_scramble() != s.generate_scramble()


def test_verifier_known_value() -> None:
    """The verifier of 'password' is the well-known MySQL PASSWORD() value."""
    verifier = s.native_password_verifier(b"password")
    assert s.verifier_to_hex(verifier) == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert s.verifier_from_hex("*2470c0c06dee42fd1618bb99005adca2ec9d1e19") == verifier
    assert s.verifier_from_hex("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19") == verifier


def test_verifier_empty_password() -> None:
    """The empty password's verifier is empty both ways."""
    assert s.native_password_verifier(b"") == b""
    assert s.verifier_to_hex(b"") == ""
    assert s.verifier_from_hex("") == b""


def test_verifier_from_hex_rejects_garbage() -> None:
    """A string that is not a verifier raises ValueError."""
    with pytest.raises(ValueError):
        s.verifier_from_hex("*1234")
    with pytest.raises(ValueError):
        s.verifier_from_hex("*" + "zz" * 20)


@given(password=st.binary(min_size=1, max_size=40), scramble=st.binary(min_size=20, max_size=20))
def test_native_response_matches_pymysql(password: bytes, scramble: bytes) -> None:
    """native_password_response agrees with PyMySQL's implementation."""
    assert s.native_password_response(password, scramble) == (
        pymysql_auth.scramble_native_password(password, scramble)
    )


def test_native_response_ignores_trailing_nul() -> None:
    """A scramble passed with its trailing NUL gives the same answer."""
    assert s.native_password_response(b"pw", SCRAMBLE + b"\x00") == (
        s.native_password_response(b"pw", SCRAMBLE)
    )


def test_native_empty_password() -> None:
    """An empty password gives an empty answer."""
    assert s.native_password_response(b"", SCRAMBLE) == b""


def test_check_native_password_recovers_stage1() -> None:
    """A right answer is accepted and SHA1(password) is recovered."""
    verifier = s.native_password_verifier(b"secret")
    response = s.native_password_response(b"secret", SCRAMBLE)
    stage1 = s.check_native_password(SCRAMBLE, response, verifier)
    assert stage1 == hashlib.sha1(b"secret").digest() == s.native_password_stage1(b"secret")


def test_check_native_password_wrong() -> None:
    """A wrong password, a wrong scramble or a short answer is refused."""
    verifier = s.native_password_verifier(b"secret")
    assert (
        s.check_native_password(SCRAMBLE, s.native_password_response(b"x", SCRAMBLE), verifier)
        is None
    )
    response = s.native_password_response(b"secret", OTHER_SCRAMBLE)
    assert s.check_native_password(SCRAMBLE, response, verifier) is None
    assert s.check_native_password(SCRAMBLE, b"", verifier) is None
    assert s.check_native_password(SCRAMBLE, response[:19], verifier) is None


def test_check_native_empty_verifier() -> None:
    """An empty verifier (empty password) accepts only an empty answer."""
    assert s.check_native_password(SCRAMBLE, b"", b"") == b""
    assert s.check_native_password(SCRAMBLE, b"\x00" * 20, b"") is None


def test_proxy_answers_other_scrambles() -> None:
    """The stage1 recovered from one scramble answers any other scramble correctly."""
    verifier = s.native_password_verifier(b"pw")
    stage1 = s.check_native_password(
        SCRAMBLE, s.native_password_response(b"pw", SCRAMBLE), verifier
    )
    assert stage1 is not None
    for backend in (OTHER_SCRAMBLE, s.generate_scramble(), s.generate_scramble()):
        answer = s.native_password_response_from_stage1(stage1, verifier, backend)
        assert answer == s.native_password_response(b"pw", backend)
        assert s.native_password_response_from_stage1(stage1, b"", backend) == answer
        assert s.check_native_password(backend, answer, verifier) == stage1
    assert s.native_password_response_from_stage1(b"", b"", OTHER_SCRAMBLE) == b""


@given(password=st.binary(min_size=1, max_size=40), scramble=st.binary(min_size=20, max_size=20))
def test_caching_sha2_matches_pymysql(password: bytes, scramble: bytes) -> None:
    """caching_sha2_scramble agrees with PyMySQL's implementation."""
    assert s.caching_sha2_scramble(password, scramble) == (
        pymysql_auth.scramble_caching_sha2(password, scramble)
    )


def test_caching_sha2_check() -> None:
    """The fast-path check accepts the right answer, recovers SHA256(pw), refuses others."""
    digest = s.caching_sha2_digest(b"pw")
    answer = s.caching_sha2_scramble(b"pw", SCRAMBLE)
    assert s.caching_sha2_check(SCRAMBLE, answer, digest) == hashlib.sha256(b"pw").digest()
    assert s.caching_sha2_check(OTHER_SCRAMBLE, answer, digest) is None
    assert s.caching_sha2_check(SCRAMBLE, answer[:31], digest) is None
    assert s.caching_sha2_check(SCRAMBLE, b"", b"") == b""
    assert s.caching_sha2_check(SCRAMBLE, answer, b"") is None
    assert s.caching_sha2_scramble(b"", SCRAMBLE) == b""


def test_clear_password() -> None:
    """The clear-password answer is the NUL-terminated password."""
    assert s.clear_password_response(b"pw") == b"pw\x00"


def test_xor_bytes() -> None:
    """xor_bytes XORs equal-length strings and refuses different lengths."""
    assert s.xor_bytes(b"\x0f\xf0", b"\xff\xff") == b"\xf0\x0f"
    with pytest.raises(ValueError):
        s.xor_bytes(b"a", b"ab")


@pytest.fixture(scope="module")
def rsa_key() -> bytes:
    """A throwaway RSA private key in PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_rsa_round_trip(rsa_key: bytes) -> None:
    """A password encrypted with the public key decrypts with the private key."""
    public = s.rsa_public_key_pem(rsa_key)
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")
    for password in (b"", b"pw", b"a much longer password than twenty bytes!"):
        ciphertext = s.rsa_encrypt_password(password, SCRAMBLE + b"\x00", public)
        assert len(ciphertext) == 256
        assert s.rsa_decrypt_password(ciphertext, SCRAMBLE, rsa_key) == password


def test_rsa_interoperates_with_pymysql(rsa_key: bytes) -> None:
    """What PyMySQL encrypts, we decrypt (and the other way round)."""
    public = s.rsa_public_key_pem(rsa_key)
    ciphertext = pymysql_auth.sha2_rsa_encrypt(b"secret", SCRAMBLE, public)
    assert s.rsa_decrypt_password(ciphertext, SCRAMBLE, rsa_key) == b"secret"


def test_rsa_decrypt_garbage(rsa_key: bytes) -> None:
    """Garbage ciphertext decrypts to None."""
    assert s.rsa_decrypt_password(b"\x00" * 256, SCRAMBLE, rsa_key) is None
    assert s.rsa_decrypt_password(b"short", SCRAMBLE, rsa_key) is None


def test_rsa_rejects_non_rsa_keys() -> None:
    """EC keys are refused with ValueError."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError):
        s.rsa_encrypt_password(b"pw", SCRAMBLE, public)
    with pytest.raises(ValueError):
        s.rsa_decrypt_password(b"x", SCRAMBLE, private)


def test_scramble_bytes_distribution() -> None:
    """Over many scrambles, every allowed 7-bit value can appear."""
    seen = set(itertools.chain.from_iterable(s.generate_scramble() for _ in range(500)))
    assert seen <= set(range(1, 128)) - {0x24}
    assert len(seen) > 100

"""
The password algorithms of MySQL's authentication plugins: scrambles,
C{mysql_native_password}, C{caching_sha2_password} and RSA password encryption.

Specs:
  - U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html}
  - U{https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html}

C{mysql_native_password}: the client answers a 20-byte scramble I{P} with
M{SHA1(pw) XOR SHA1(P + SHA1(SHA1(pw)))}. Servers store only the verifier
M{stage2 = SHA1(SHA1(pw))} (C{*HEX} in C{mysql.user}). Holding the verifier
is enough to check an answer I{and} to recover M{stage1 = SHA1(pw)} from it
(L{check_native_password}); with I{stage1} a proxy can answer any other server's
scramble (L{native_password_response_from_stage1}) without ever knowing the
password.

Every comparison of secrets uses L{hmac.compare_digest}. The C{cryptography}
package is imported only by the RSA functions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Callable

__all__ = [
    "SCRAMBLE_LENGTH",
    "caching_sha2_check",
    "caching_sha2_digest",
    "caching_sha2_scramble",
    "check_native_password",
    "clear_password_response",
    "generate_scramble",
    "native_password_response",
    "native_password_response_from_stage1",
    "native_password_stage1",
    "native_password_verifier",
    "rsa_decrypt_password",
    "rsa_encrypt_password",
    "rsa_public_key_pem",
    "verifier_from_hex",
    "verifier_to_hex",
    "xor_bytes",
]

#: The length of a scramble (MySQL's C{SCRAMBLE_LENGTH}).
SCRAMBLE_LENGTH = 20

# Map any byte to a printable-safe scramble byte the way MySQL's
# generate_user_salt does: keep 7 bits, then turn NUL and '$' into the next byte.
_SCRAMBLE_TABLE = bytes(
    (b & 0x7F) + 1 if (b & 0x7F) in (0x00, 0x24) else (b & 0x7F) for b in range(256)
)


def xor_bytes(left: bytes, right: bytes) -> bytes:
    """
    XOR two byte strings of the same length.

    @param left: the first operand.
    @param right: the second operand (as long as C{left}).
    @return: the bytewise XOR.
    @raise ValueError: the lengths differ.
    """
    if len(left) != len(right):
        raise ValueError(f"cannot XOR {len(left)} bytes with {len(right)} bytes")
    size = len(left)
    return (int.from_bytes(left, "little") ^ int.from_bytes(right, "little")).to_bytes(
        size, "little"
    )


def _scramble20(scramble: bytes) -> bytes:
    # Handshakes and AuthSwitchRequests often carry a trailing NUL; like the
    # MySQL clients, use the first SCRAMBLE_LENGTH bytes.
    return scramble[:SCRAMBLE_LENGTH]


def generate_scramble(rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """
    Make a fresh 20-byte scramble for a handshake: random 7-bit bytes, never
    NUL (it is sent NUL-terminated) and never C{$}, as MySQL makes them.

    @param rng: returns that many random bytes (tests pass a deterministic one).
    @return: the scramble.
    """
    return rng(SCRAMBLE_LENGTH).translate(_SCRAMBLE_TABLE)


# --------------------------------------------------------------------------
# mysql_native_password
# --------------------------------------------------------------------------


def native_password_stage1(password: bytes) -> bytes:
    """
    M{stage1 = SHA1(password)}: what L{check_native_password} recovers.

    @param password: the password.
    @return: the 20-byte digest.
    """
    return hashlib.sha1(password).digest()


def native_password_verifier(password: bytes) -> bytes:
    """
    The verifier servers store: M{stage2 = SHA1(SHA1(password))}, or C{b""}
    for an empty password (as C{mysql.user} stores it).

    @param password: the password.
    @return: the 20-byte verifier, or C{b""}.
    """
    if not password:
        return b""
    return hashlib.sha1(hashlib.sha1(password).digest()).digest()


def verifier_from_hex(text: str) -> bytes:
    """
    Parse a stored verifier as MySQL prints it (C{"*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"};
    the C{*} is optional, case does not matter; C{""} is the empty password).

    @param text: the verifier text.
    @return: the 20-byte verifier, or C{b""}.
    @raise ValueError: C{text} is not a verifier.
    """
    text = text.strip()
    if not text:
        return b""
    if text.startswith("*"):
        text = text[1:]
    if len(text) != 2 * SCRAMBLE_LENGTH:
        raise ValueError(f"not a mysql_native_password verifier: {text!r}")
    return bytes.fromhex(text)


def verifier_to_hex(verifier: bytes) -> str:
    """
    Format a verifier as MySQL prints it.

    @param verifier: the 20-byte verifier, or C{b""}.
    @return: C{"*"} and 40 upper-case hex digits, or C{""}.
    """
    if not verifier:
        return ""
    return "*" + verifier.hex().upper()


def native_password_response_from_stage1(stage1: bytes, verifier: bytes, scramble: bytes) -> bytes:
    """
    Answer C{scramble} knowing only M{SHA1(pw)} and its verifier: a proxy's
    answer to a backend's scramble after L{check_native_password} recovered
    I{stage1} from the client.

    @param stage1: M{SHA1(password)} (C{b""} for an empty password).
    @param verifier: M{SHA1(stage1)}; when empty it is computed from C{stage1}.
    @param scramble: the server's scramble (a trailing NUL is ignored).
    @return: the 20-byte answer, or C{b""} for an empty password.
    """
    if not stage1:
        return b""
    if not verifier:
        verifier = hashlib.sha1(stage1).digest()
    mask = hashlib.sha1(_scramble20(scramble) + verifier).digest()
    return xor_bytes(stage1, mask)


def native_password_response(password: bytes, scramble: bytes) -> bytes:
    """
    A client's answer to C{scramble}:
    M{SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw)))}.

    @param password: the password (C{b""} gives an empty answer).
    @param scramble: the server's scramble (a trailing NUL is ignored).
    @return: the 20-byte answer, or C{b""}.
    """
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    return native_password_response_from_stage1(stage1, hashlib.sha1(stage1).digest(), scramble)


def check_native_password(scramble: bytes, response: bytes, verifier: bytes) -> bytes | None:
    """
    Verify a client's answer to our C{scramble} against a stored verifier and
    recover M{SHA1(pw)}.

    M{stage1 = response XOR SHA1(scramble + verifier)}; the answer is right iff
    M{SHA1(stage1) == verifier} (compared in constant time).

    @param scramble: the scramble we sent (a trailing NUL is ignored).
    @param response: the client's answer.
    @param verifier: the stored M{SHA1(SHA1(pw))}, or C{b""} for an empty
        password (then only an empty answer is accepted).
    @return: the recovered M{SHA1(pw)} if the answer is right (C{b""} for an
        empty password, so test the result with C{is None}), else C{None}.
    """
    if not verifier:
        return b"" if response == b"" else None
    if len(response) != SCRAMBLE_LENGTH or len(verifier) != SCRAMBLE_LENGTH:
        return None
    mask = hashlib.sha1(_scramble20(scramble) + verifier).digest()
    stage1 = xor_bytes(response, mask)
    if hmac.compare_digest(hashlib.sha1(stage1).digest(), verifier):
        return stage1
    return None


# --------------------------------------------------------------------------
# caching_sha2_password
# --------------------------------------------------------------------------


def caching_sha2_digest(password: bytes) -> bytes:
    """
    What a C{caching_sha2_password} server caches for the fast path:
    M{SHA256(SHA256(password))}.

    @param password: the password.
    @return: the 32-byte digest.
    """
    return hashlib.sha256(hashlib.sha256(password).digest()).digest()


def caching_sha2_scramble(password: bytes, scramble: bytes) -> bytes:
    """
    A client's fast-path answer:
    M{SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble)}.

    @param password: the password (C{b""} gives an empty answer).
    @param scramble: the server's scramble (a trailing NUL is ignored).
    @return: the 32-byte answer, or C{b""}.
    """
    if not password:
        return b""
    stage1 = hashlib.sha256(password).digest()
    stage2 = hashlib.sha256(stage1).digest()
    mask = hashlib.sha256(stage2 + _scramble20(scramble)).digest()
    return xor_bytes(stage1, mask)


def caching_sha2_check(scramble: bytes, response: bytes, digest: bytes) -> bytes | None:
    """
    Verify a fast-path answer against the cached L{caching_sha2_digest} and
    recover M{SHA256(pw)}.

    @param scramble: the scramble we sent (a trailing NUL is ignored).
    @param response: the client's answer.
    @param digest: the cached M{SHA256(SHA256(pw))}, or C{b""} for an empty
        password (then only an empty answer is accepted).
    @return: the recovered M{SHA256(pw)} (C{b""} for an empty password) if the
        answer is right, else C{None}.
    """
    if not digest:
        return b"" if response == b"" else None
    if len(response) != 32 or len(digest) != 32:
        return None
    mask = hashlib.sha256(digest + _scramble20(scramble)).digest()
    stage1 = xor_bytes(response, mask)
    if hmac.compare_digest(hashlib.sha256(stage1).digest(), digest):
        return stage1
    return None


def clear_password_response(password: bytes) -> bytes:
    """
    The C{mysql_clear_password} answer (also the TLS full-authentication answer
    of C{caching_sha2_password}): the password, NUL-terminated. Only ever send
    it over TLS.

    @param password: the password.
    @return: the answer.
    """
    return password + b"\x00"


# --------------------------------------------------------------------------
# RSA (caching_sha2 / sha256 full authentication without TLS)
# --------------------------------------------------------------------------


def _xor_with_scramble(data: bytes, scramble: bytes) -> bytes:
    scramble = _scramble20(scramble)
    if not scramble:
        return data
    repeated = (scramble * (len(data) // len(scramble) + 1))[: len(data)]
    return xor_bytes(data, repeated)


def rsa_encrypt_password(password: bytes, scramble: bytes, public_key_pem: bytes) -> bytes:
    """
    Encrypt a password for C{caching_sha2_password} (or C{sha256_password})
    full authentication without TLS: the NUL-terminated password XORed with
    the scramble (repeated), then RSA-OAEP (SHA-1) with the server's public key.

    @param password: the password.
    @param scramble: the server's scramble (a trailing NUL is ignored).
    @param public_key_pem: the server's PEM public key (sent in an
        C{AuthMoreData} after the client's C{0x02} request).
    @return: the ciphertext to send as the C{AuthSwitchResponse}.
    @raise ValueError: the key cannot be loaded or is not RSA.
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the server's public key is not an RSA key")
    plain = _xor_with_scramble(password + b"\x00", scramble)
    return key.encrypt(
        plain,
        padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
        ),
    )


def rsa_decrypt_password(
    ciphertext: bytes, scramble: bytes, private_key_pem: bytes
) -> bytes | None:
    """
    The server side of L{rsa_encrypt_password}: recover the password.

    @param ciphertext: what the client sent.
    @param scramble: the scramble we sent.
    @param private_key_pem: our PEM private key (unencrypted).
    @return: the password (without its NUL), or C{None} if the ciphertext does
        not decrypt (a wrong key, or garbage from the client).
    @raise ValueError: the private key cannot be loaded or is not RSA.
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    try:
        plain = key.decrypt(
            ciphertext,
            padding.OAEP(
                mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
            ),
        )
    except ValueError:
        return None
    password = _xor_with_scramble(plain, scramble)
    if password.endswith(b"\x00"):
        password = password[:-1]
    return password


def rsa_public_key_pem(private_key_pem: bytes) -> bytes:
    """
    The PEM public key a server sends when a C{caching_sha2_password} client
    asks for it (C{0x02}).

    @param private_key_pem: the PEM private key (unencrypted).
    @return: the PEM (SubjectPublicKeyInfo) public key.
    @raise ValueError: the private key cannot be loaded.
    """
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_key_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

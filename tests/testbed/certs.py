"""
Throwaway TLS material for the test bed: a CA, a server certificate and a client certificate.

All certificates are X.509 v3 (seekdb's rustls-based TLS layer refuses v1 certificates).  The
server certificate names C{IP:127.0.0.1} and C{DNS:localhost} in its subjectAltName, so clients that
verify the host name accept it for both.  Keys are RSA 2048 in PKCS#8 PEM without a passphrase.

Files (in the certificate directory, by default C{<testbed>/certs}):
C{ca.pem}, C{ca-key.pem}, C{server-cert.pem}, C{server-key.pem}, C{client-cert.pem},
C{client-key.pem}.  They are made once and reused while they stay valid for another week.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import attrs

CA_NAME = "obproxy_tx test bed CA"


@attrs.frozen
class TLSCerts:
    """
    Paths of the test bed's certificate files.

    @ivar directory: the directory holding them.
    @ivar ca: the CA certificate (PEM) that signed the server and client certificates.
    @ivar ca_key: the CA's private key, for tests that sign more certificates.
    @ivar cert: the server certificate (SAN C{IP:127.0.0.1}, C{DNS:localhost}).
    @ivar key: the server's private key.
    @ivar client_cert: a client certificate (CN C{testbed-client}, clientAuth).
    @ivar client_key: its private key.
    """

    directory: str
    ca: str
    ca_key: str
    cert: str
    key: str
    client_cert: str
    client_key: str

    @classmethod
    def in_directory(cls, directory: Path) -> TLSCerts:
        """
        The file names used under C{directory}, whether or not they exist yet.
        """
        return cls(
            directory=str(directory),
            ca=str(directory / "ca.pem"),
            ca_key=str(directory / "ca-key.pem"),
            cert=str(directory / "server-cert.pem"),
            key=str(directory / "server-key.pem"),
            client_cert=str(directory / "client-cert.pem"),
            client_key=str(directory / "client-key.pem"),
        )

    def files(self) -> list[str]:
        """
        Every file path, in a fixed order.
        """
        return [self.ca, self.ca_key, self.cert, self.key, self.client_cert, self.client_key]


def _still_valid(path: str, margin: datetime.timedelta) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return False
    not_after = getattr(cert, "not_valid_after_utc", None)
    if not_after is None:  # cryptography < 42
        not_after = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return bool(not_after - margin > datetime.datetime.now(datetime.timezone.utc))


def ensure_certs(directory: Path) -> TLSCerts:
    """
    Return the certificates in C{directory}, creating (or renewing) them when needed.

    @param directory: where to keep them; created if missing.
    """
    certs = TLSCerts.in_directory(directory)
    if all(os.path.exists(p) for p in certs.files()) and all(
        _still_valid(p, datetime.timedelta(days=7))
        for p in (certs.ca, certs.cert, certs.client_cert)
    ):
        return certs
    directory.mkdir(parents=True, exist_ok=True)
    _generate(certs)
    return certs


def _generate(certs: TLSCerts) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=1)
    end = now + datetime.timedelta(days=3650)

    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "obproxy_tx"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    ca_key = new_key()
    ca_name = name(CA_NAME)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common_name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]
    ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common_name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server_cert = leaf(
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_key, client_cert = leaf("testbed-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def write_key(path: str, key: rsa.RSAPrivateKey) -> None:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(path, data, 0o600)

    def write_cert(path: str, cert: x509.Certificate) -> None:
        _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    write_key(certs.ca_key, ca_key)
    write_cert(certs.ca, ca_cert)
    write_key(certs.key, server_key)
    write_cert(certs.cert, server_cert)
    write_key(certs.client_key, client_key)
    write_cert(certs.client_cert, client_cert)


def _write(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)

"""
TLS contexts for both sides of a MySQL connection.

MySQL starts TLS in the middle of the connection phase (after the client's
C{SSLRequest}), so both sides call C{ITLSTransport.startTLS} with the objects
built here:

  - L{server_tls_options}: a pyOpenSSL context from PEM certificate and key
    files (plus, optionally, a CA whose client certificates are accepted);
  - L{client_tls_options}: hostname verification through C{service_identity}
    via L{twisted.internet.ssl.optionsForClientTLS}, trusting a given CA file
    or the platform's trust store.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import ssl


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def server_tls_options(
    cert_path: str, key_path: str, ca_path: str | None = None, require_client_cert: bool = False
) -> ssl.CertificateOptions:
    """
    Build the server's TLS options from PEM files.

    @param cert_path: the server certificate (may hold the chain after it).
    @param key_path: its private key.
    @param ca_path: a CA certificate for verifying client certificates.
    @param require_client_cert: whether clients must present a certificate
        signed by C{ca_path}.
    @return: options for C{startTLS}.
    """
    certificate = ssl.PrivateCertificate.loadPEM(_read(cert_path) + b"\n" + _read(key_path))
    kwargs: dict[str, Any] = {}
    if ca_path is not None and require_client_cert:
        authority = ssl.Certificate.loadPEM(_read(ca_path))
        kwargs.update(verify=True, caCerts=[authority.original], requireCertificate=True)
    return ssl.CertificateOptions(
        privateKey=certificate.privateKey.original,
        certificate=certificate.original,
        **kwargs,
    )


def client_tls_options(
    hostname: str,
    ca_path: str | None = None,
    verify: bool = True,
    client_cert_path: str | None = None,
    client_key_path: str | None = None,
) -> Any:
    """
    Build the client's TLS options.

    @param hostname: the name (or IP address) the server certificate must match.
    @param ca_path: a PEM CA certificate to trust; C{None} uses the platform
        trust store.
    @param verify: C{False} disables certificate and hostname verification
        (for tests against servers with throwaway certificates only).
    @param client_cert_path: a client certificate to present.
    @param client_key_path: its key.
    @return: an C{IOpenSSLClientConnectionCreator} for C{startTLS}.
    """
    client_certificate = None
    if client_cert_path is not None:
        key = _read(client_key_path) if client_key_path is not None else b""
        client_certificate = ssl.PrivateCertificate.loadPEM(_read(client_cert_path) + b"\n" + key)
    if not verify:
        options: dict[str, Any] = {"verify": False}
        if client_certificate is not None:
            options.update(
                privateKey=client_certificate.privateKey.original,
                certificate=client_certificate.original,
            )
        return ssl.CertificateOptions(**options)
    trust_root: Any = (
        ssl.Certificate.loadPEM(_read(ca_path)) if ca_path is not None else ssl.platformTrust()
    )
    return ssl.optionsForClientTLS(
        hostname, trustRoot=trust_root, clientCertificate=client_certificate
    )

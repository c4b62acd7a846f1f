"""
L{twisted.cred} integration for MySQL authentication: credentials for each
authentication method, an in-memory checker and a realm.
"""

from __future__ import annotations

from obproxy_tx.auth.checkers import InMemoryMySQLChecker, MySQLUser, parse_verifier
from obproxy_tx.auth.credentials import (
    CachingSHA2Credentials,
    ClearPasswordCredentials,
    ICachingSHA2Credentials,
    IMySQLClearPasswordCredentials,
    IMySQLCredentials,
    IMySQLScrambleCredentials,
    NativePasswordCredentials,
    sha2_digest,
)
from obproxy_tx.auth.realm import MySQLRealm

__all__ = [
    "CachingSHA2Credentials",
    "ClearPasswordCredentials",
    "ICachingSHA2Credentials",
    "IMySQLClearPasswordCredentials",
    "IMySQLCredentials",
    "IMySQLScrambleCredentials",
    "InMemoryMySQLChecker",
    "MySQLRealm",
    "MySQLUser",
    "NativePasswordCredentials",
    "parse_verifier",
    "sha2_digest",
]

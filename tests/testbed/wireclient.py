"""
A tiny blocking MySQL-protocol client for the test bed.

It exists so that the test bed can check that a server is ready, run administrative SQL and record
raw packets (see C{tests/golden/capture.py}) without depending on the code under test
(C{obproxy_tx}) or on any third-party driver.  It speaks only what it needs: plain TCP (or a unix
socket), C{mysql_native_password} (also after an auth switch), C{COM_QUERY} with text result
sets, and raw packet I/O for everything else.  It is deliberately not a general client.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
from typing import List, Sequence, Tuple

import attrs

#: Capability bits used here (subset of the MySQL names).
CLIENT_LONG_PASSWORD = 0x00000001
CLIENT_FOUND_ROWS = 0x00000002
CLIENT_LONG_FLAG = 0x00000004
CLIENT_CONNECT_WITH_DB = 0x00000008
CLIENT_LOCAL_FILES = 0x00000080
CLIENT_PROTOCOL_41 = 0x00000200
CLIENT_SSL = 0x00000800
CLIENT_TRANSACTIONS = 0x00002000
CLIENT_SECURE_CONNECTION = 0x00008000
CLIENT_MULTI_STATEMENTS = 0x00010000
CLIENT_MULTI_RESULTS = 0x00020000
CLIENT_PS_MULTI_RESULTS = 0x00040000
CLIENT_PLUGIN_AUTH = 0x00080000
CLIENT_CONNECT_ATTRS = 0x00100000
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x00200000
CLIENT_SESSION_TRACK = 0x00800000
CLIENT_DEPRECATE_EOF = 0x01000000

#: What this client asks for by default: classic EOF packets, no session tracking.
DEFAULT_CAPABILITIES = (
    CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
)

UTF8MB4_GENERAL_CI = 45


class WireError(Exception):
    """
    The server answered with an ERR packet, or the conversation went wrong.

    @ivar code: the MySQL error code (0 when the failure is not an ERR packet).
    @ivar sqlstate: the SQLSTATE of the ERR packet, or C{""}.
    """

    def __init__(self, message: str, code: int = 0, sqlstate: str = "") -> None:
        super().__init__(f"{code} ({sqlstate}): {message}" if code else message)
        self.code = code
        self.sqlstate = sqlstate


@attrs.frozen
class Handshake:
    """
    The fields of an initial handshake (protocol 10) that the test bed cares about.

    @ivar server_version: the version string of the handshake.
    @ivar connection_id: the server's connection (thread) id.
    @ivar scramble: the full auth-plugin data (normally 20 bytes, without trailing NUL).
    @ivar capabilities: the server's capability flags (lower and upper 16 bits).
    @ivar auth_plugin: the default auth plugin name.
    """

    server_version: str
    connection_id: int
    scramble: bytes
    capabilities: int
    auth_plugin: str


def native_password(password: bytes, scramble: bytes) -> bytes:
    """
    Compute the C{mysql_native_password} answer to C{scramble}.

    @param password: the clear-text password.
    @param scramble: the server's 20-byte scramble.
    @return: 20 bytes, or C{b""} for an empty password.
    """
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(scramble[:20] + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix))


def lenenc_int(data: bytes, pos: int) -> Tuple[int | None, int]:
    """
    Read a length-encoded integer.

    @return: C{(value, new_position)}; value is C{None} for the NULL marker C{0xFB}.
    """
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return None, pos + 1
    if first == 0xFC:
        return struct.unpack_from("<H", data, pos + 1)[0], pos + 3
    if first == 0xFD:
        return int.from_bytes(data[pos + 1 : pos + 4], "little"), pos + 4
    return struct.unpack_from("<Q", data, pos + 1)[0], pos + 9


def lenenc_bytes(data: bytes, pos: int) -> Tuple[bytes | None, int]:
    """
    Read a length-encoded string.

    @return: C{(value, new_position)}; value is C{None} for SQL NULL.
    """
    length, pos = lenenc_int(data, pos)
    if length is None:
        return None, pos
    return data[pos : pos + length], pos + length


def parse_handshake(payload: bytes) -> Handshake:
    """
    Parse an initial handshake (HandshakeV10) payload.

    @raise WireError: if it is an ERR packet or not protocol 10.
    """
    if payload[:1] == b"\xff":
        raise error_from_payload(payload)
    if payload[0] != 10:
        raise WireError(f"unexpected protocol version {payload[0]}")
    end = payload.index(b"\x00", 1)
    version = payload[1:end].decode("utf-8", "replace")
    pos = end + 1
    connection_id = struct.unpack_from("<I", payload, pos)[0]
    pos += 4
    part1 = payload[pos : pos + 8]
    pos += 9
    caps = struct.unpack_from("<H", payload, pos)[0]
    pos += 2
    plugin = "mysql_native_password"
    part2 = b""
    if len(payload) > pos:
        pos += 1  # character set
        pos += 2  # status flags
        caps |= struct.unpack_from("<H", payload, pos)[0] << 16
        pos += 2
        data_len = payload[pos]
        pos += 1 + 10
        if caps & CLIENT_SECURE_CONNECTION:
            n = max(13, data_len - 8)
            part2 = payload[pos : pos + n].rstrip(b"\x00")
            pos += n
        if caps & CLIENT_PLUGIN_AUTH:
            plugin = payload[pos:].split(b"\x00", 1)[0].decode("ascii", "replace")
    return Handshake(version, connection_id, part1 + part2, caps, plugin)


def error_from_payload(payload: bytes) -> WireError:
    """
    Build a L{WireError} from an ERR packet payload (protocol 4.1 layout).
    """
    code = struct.unpack_from("<H", payload, 1)[0]
    if payload[3:4] == b"#":
        return WireError(payload[9:].decode("utf-8", "replace"), code, payload[4:9].decode())
    return WireError(payload[3:].decode("utf-8", "replace"), code, "")


class WireClient:
    """
    One blocking connection to a MySQL-protocol server.

    Packets are read and written whole (no 16 MiB continuation support: the test bed never needs
    it).  Every packet read or written is also appended to L{transcript} as
    C{(direction, seq, payload)} so that callers can record exact bytes.

    @ivar handshake: the server's initial handshake once L{connect} has run.
    @ivar capabilities: the capabilities this client sent.
    @ivar transcript: every packet sent (C{">"}) and received (C{"<"}).
    """

    def __init__(self, sock: socket.socket) -> None:
        """
        @param sock: a connected stream socket.
        """
        self._sock = sock
        self._buffer = b""
        self.seq = 0
        self.handshake: Handshake | None = None
        self.capabilities = 0
        self.transcript: List[Tuple[str, int, bytes]] = []

    # -- raw packets ---------------------------------------------------------------------------

    def _recv_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise WireError("connection closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_packet(self) -> bytes:
        """
        Read one packet and return its payload; the sequence id moves on.
        """
        header = self._recv_exact(4)
        length = int.from_bytes(header[:3], "little")
        self.seq = (header[3] + 1) & 0xFF
        payload = self._recv_exact(length)
        self.transcript.append(("<", header[3], payload))
        return payload

    def write_packet(self, payload: bytes) -> None:
        """
        Send one packet (payload under 16 MiB) with the current sequence id.
        """
        self.transcript.append((">", self.seq, payload))
        self._sock.sendall(len(payload).to_bytes(3, "little") + bytes([self.seq]) + payload)
        self.seq = (self.seq + 1) & 0xFF

    def command(self, payload: bytes) -> None:
        """
        Send a command packet: the sequence id starts over at 0.
        """
        self.seq = 0
        self.write_packet(payload)

    def close(self) -> None:
        """
        Send COM_QUIT (best effort) and close the socket.
        """
        with contextlib.suppress(OSError):
            self.command(b"\x01")
        self._sock.close()

    # -- connection phase ----------------------------------------------------------------------

    def login(
        self,
        user: str,
        password: str,
        database: str | None = None,
        capabilities: int = DEFAULT_CAPABILITIES,
        connect_attrs: Sequence[Tuple[str, str]] | None = None,
        auth_plugin: str = "mysql_native_password",
    ) -> bytes:
        """
        Read the handshake, authenticate with C{mysql_native_password}, return the final OK.

        @param auth_plugin: the plugin name to claim in the handshake response; with any other
            than C{mysql_native_password} an empty auth response is sent, so the server has to
            switch (or refuse).
        @raise WireError: on an ERR packet or an auth method this client does not speak.
        """
        self.handshake = parse_handshake(self.read_packet())
        caps = capabilities & (self.handshake.capabilities | CLIENT_CONNECT_WITH_DB)
        if database:
            caps |= CLIENT_CONNECT_WITH_DB
        else:
            caps &= ~CLIENT_CONNECT_WITH_DB
        if connect_attrs is not None:
            caps |= CLIENT_CONNECT_ATTRS
        self.capabilities = caps
        auth = b""
        if auth_plugin == "mysql_native_password":
            auth = native_password(password.encode(), self.handshake.scramble)
        body = struct.pack("<IIB23x", caps, 1 << 24, UTF8MB4_GENERAL_CI)
        body += user.encode() + b"\x00"
        body += bytes([len(auth)]) + auth
        if database:
            body += database.encode() + b"\x00"
        body += auth_plugin.encode() + b"\x00"
        if connect_attrs is not None:
            attrs_blob = b"".join(
                bytes([len(k.encode())]) + k.encode() + bytes([len(v.encode())]) + v.encode()
                for k, v in connect_attrs
            )
            body += bytes([len(attrs_blob)]) + attrs_blob
        self.write_packet(body)
        return self.finish_auth(password)

    def finish_auth(self, password: str) -> bytes:
        """
        Read auth-phase packets (answering native-password auth switches) until OK.

        @raise WireError: on an ERR packet or an auth method this client does not speak.
        """
        while True:
            reply = self.read_packet()
            if reply[:1] == b"\x00":
                return reply
            if reply[:1] == b"\xff":
                raise error_from_payload(reply)
            if reply[:1] == b"\xfe":
                plugin, _, data = reply[1:].partition(b"\x00")
                if plugin != b"mysql_native_password":
                    raise WireError(f"unsupported auth switch to {plugin!r}")
                self.write_packet(native_password(password.encode(), data.rstrip(b"\x00")))
                continue
            raise WireError(f"unexpected packet in auth phase: {reply[:16].hex()}")

    # -- command phase -------------------------------------------------------------------------

    def query(self, sql: str) -> List[Tuple[bytes | None, ...]]:
        """
        Run one statement with COM_QUERY and return the rows of its (first) result.

        Statements without a result set return C{[]}.  Further results of a multi-result answer
        are read and discarded.

        @raise WireError: on an ERR packet.
        """
        self.command(b"\x03" + sql.encode())
        rows: List[Tuple[bytes | None, ...]] = []
        first = True
        while True:
            more, result = self._read_result()
            if first:
                rows = result
                first = False
            if not more:
                return rows

    def _read_result(self) -> Tuple[bool, List[Tuple[bytes | None, ...]]]:
        payload = self.read_packet()
        if payload[:1] == b"\xff":
            raise error_from_payload(payload)
        if payload[:1] == b"\x00":
            return bool(self._ok_status(payload) & 0x0008), []
        count, _ = lenenc_int(payload, 0)
        assert count is not None
        for _ in range(count):
            self.read_packet()
        deprecate_eof = bool(self.capabilities & CLIENT_DEPRECATE_EOF)
        if not deprecate_eof:
            self.read_packet()  # EOF after the column definitions
        rows: List[Tuple[bytes | None, ...]] = []
        while True:
            payload = self.read_packet()
            if payload[:1] == b"\xff":
                raise error_from_payload(payload)
            if payload[:1] == b"\xfe" and len(payload) < 0xFFFFFF:
                if deprecate_eof:
                    status = self._ok_status(payload)
                else:
                    status = struct.unpack_from("<H", payload, 3)[0]
                return bool(status & 0x0008), rows
            pos = 0
            values: List[bytes | None] = []
            for _ in range(count):
                value, pos = lenenc_bytes(payload, pos)
                values.append(value)
            rows.append(tuple(values))

    @staticmethod
    def _ok_status(payload: bytes) -> int:
        _, pos = lenenc_int(payload, 1)
        _, pos = lenenc_int(payload, pos)
        return int(struct.unpack_from("<H", payload, pos)[0])


def connect(
    host: str = "127.0.0.1",
    port: int = 3306,
    unix_socket: str | None = None,
    timeout: float = 10.0,
) -> WireClient:
    """
    Open a TCP (or unix-socket) connection; nothing is read yet.

    @param timeout: socket timeout in seconds for every later read and write.
    """
    sock: socket.socket
    if unix_socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(unix_socket)
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return WireClient(sock)


def run_sql(
    host: str,
    port: int,
    user: str,
    password: str,
    statements: Sequence[str],
    database: str | None = None,
    timeout: float = 30.0,
) -> List[List[Tuple[bytes | None, ...]]]:
    """
    Log in, run each statement in order, log out; return the rows of each statement.

    @raise WireError: on a failed login or statement.
    @raise OSError: if the server cannot be reached.
    """
    client = connect(host, port, timeout=timeout)
    try:
        client.login(user, password, database)
        return [client.query(sql) for sql in statements]
    finally:
        client.close()

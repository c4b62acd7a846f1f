"""
Protocol errors and the MySQL error numbers they carry.

A L{ProtocolError} says whose fault a violation is (L{LocalProtocolError}: ours;
L{RemoteProtocolError}: the peer's) and carries the MySQL error code and SQLSTATE
an adapter should put in the ERR packet it sends before closing. A received ERR
packet is not an exception here: it is a value (L{obproxy_tx.wire.packets.ERRPacket})
to hand on.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """
    Server (C{ER_*}) and client (C{CR_*}) error numbers used by this project.
    """

    ER_CON_COUNT_ERROR = 1040
    ER_HANDSHAKE_ERROR = 1043
    ER_DBACCESS_DENIED_ERROR = 1044
    ER_ACCESS_DENIED_ERROR = 1045
    ER_NO_DB_ERROR = 1046
    ER_UNKNOWN_COM_ERROR = 1047
    ER_BAD_DB_ERROR = 1049
    ER_PARSE_ERROR = 1064
    ER_EMPTY_QUERY = 1065
    ER_NO_SUCH_THREAD = 1094
    ER_KILL_DENIED_ERROR = 1095
    ER_UNKNOWN_ERROR = 1105
    ER_ABORTING_CONNECTION = 1152
    ER_NET_PACKET_TOO_LARGE = 1153
    ER_NET_READ_ERROR_FROM_PIPE = 1154
    ER_NET_FCNTL_ERROR = 1155
    ER_NET_PACKETS_OUT_OF_ORDER = 1156
    ER_NET_UNCOMPRESS_ERROR = 1157
    ER_NET_READ_ERROR = 1158
    ER_NET_READ_INTERRUPTED = 1159
    ER_NET_ERROR_ON_WRITE = 1160
    ER_NET_WRITE_INTERRUPTED = 1161
    ER_NEW_ABORTING_CONNECTION = 1184
    ER_UNKNOWN_SYSTEM_VARIABLE = 1193
    ER_TOO_MANY_USER_CONNECTIONS = 1203
    ER_SPECIFIC_ACCESS_DENIED_ERROR = 1227
    ER_NOT_SUPPORTED_YET = 1235
    ER_UNKNOWN_STMT_HANDLER = 1243
    ER_NOT_SUPPORTED_AUTH_MODE = 1251
    ER_QUERY_INTERRUPTED = 1317
    ER_WRONG_ARGUMENTS = 1210
    ER_MALFORMED_PACKET = 1835
    ER_SECURE_TRANSPORT_REQUIRED = 3159
    ER_CLIENT_INTERACTION_TIMEOUT = 4031
    CR_UNKNOWN_ERROR = 2000
    CR_CONNECTION_ERROR = 2002
    CR_CONN_HOST_ERROR = 2003
    CR_SERVER_GONE_ERROR = 2006
    CR_SERVER_HANDSHAKE_ERR = 2012
    CR_SERVER_LOST = 2013
    CR_COMMANDS_OUT_OF_SYNC = 2014
    CR_NET_PACKET_TOO_LARGE = 2020
    CR_SSL_CONNECTION_ERROR = 2026
    CR_MALFORMED_PACKET = 2027
    CR_AUTH_PLUGIN_CANNOT_LOAD = 2059


_SQLSTATES: dict[int, str] = {
    ErrorCode.ER_CON_COUNT_ERROR: "08004",
    ErrorCode.ER_HANDSHAKE_ERROR: "08S01",
    ErrorCode.ER_DBACCESS_DENIED_ERROR: "42000",
    ErrorCode.ER_ACCESS_DENIED_ERROR: "28000",
    ErrorCode.ER_NO_DB_ERROR: "3D000",
    ErrorCode.ER_UNKNOWN_COM_ERROR: "08S01",
    ErrorCode.ER_BAD_DB_ERROR: "42000",
    ErrorCode.ER_PARSE_ERROR: "42000",
    ErrorCode.ER_EMPTY_QUERY: "42000",
    ErrorCode.ER_ABORTING_CONNECTION: "08S01",
    ErrorCode.ER_NET_PACKET_TOO_LARGE: "08S01",
    ErrorCode.ER_NET_READ_ERROR_FROM_PIPE: "08S01",
    ErrorCode.ER_NET_FCNTL_ERROR: "08S01",
    ErrorCode.ER_NET_PACKETS_OUT_OF_ORDER: "08S01",
    ErrorCode.ER_NET_UNCOMPRESS_ERROR: "08S01",
    ErrorCode.ER_NET_READ_ERROR: "08S01",
    ErrorCode.ER_NET_READ_INTERRUPTED: "08S01",
    ErrorCode.ER_NET_ERROR_ON_WRITE: "08S01",
    ErrorCode.ER_NET_WRITE_INTERRUPTED: "08S01",
    ErrorCode.ER_NEW_ABORTING_CONNECTION: "08S01",
    ErrorCode.ER_TOO_MANY_USER_CONNECTIONS: "42000",
    ErrorCode.ER_SPECIFIC_ACCESS_DENIED_ERROR: "42000",
    ErrorCode.ER_NOT_SUPPORTED_YET: "42000",
    ErrorCode.ER_NOT_SUPPORTED_AUTH_MODE: "08004",
    ErrorCode.ER_QUERY_INTERRUPTED: "70100",
    ErrorCode.ER_WRONG_ARGUMENTS: "HY000",
}


def sqlstate_for(code: int) -> str:
    """
    Return the SQLSTATE MySQL pairs with error C{code} (C{"HY000"} when it has none).

    @param code: a MySQL error number.
    @return: a five-character SQLSTATE.
    """
    return _SQLSTATES.get(code, "HY000")


def is_client_error(code: int) -> bool:
    """
    Return whether C{code} is a client-library error number (C{CR_*}, 2000-2999).

    A server must never put one in an ERR packet: libmariadb (the C{mariadb}
    command-line client among others) reports such a packet as
    C{2027 Received malformed packet} and loses the message.

    @param code: a MySQL error number.
    """
    return 2000 <= code < 3000


class ProtocolError(Exception):
    """
    Someone broke the MySQL protocol. Abstract: raise a subclass.

    @ivar error_code: the MySQL error number to report.
    @ivar sqlstate: the SQLSTATE to report.
    @ivar message: a human-readable description, fit for an ERR packet.
    """

    def __init__(
        self,
        message: str,
        error_code: int = ErrorCode.ER_MALFORMED_PACKET,
        sqlstate: str | None = None,
    ) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError, not ProtocolError")
        super().__init__(message)
        self.message = message
        self.error_code = int(error_code)
        self.sqlstate = sqlstate if sqlstate is not None else sqlstate_for(error_code)


class LocalProtocolError(ProtocolError):
    """
    We tried to do something the protocol forbids (a bug in the caller).
    """


class RemoteProtocolError(ProtocolError):
    """
    The peer sent something the protocol forbids, or something we cannot parse.
    """

"""
Virtual prepared statements.

The ids a client sees are the proxy's (L{PreparedStatements} numbers them per
client session from 1). Each server session maps them to its own ids
(L{obproxy_tx.session.server_session.ServerSession.statements}); a statement
that runs on a server session that never prepared it is prepared there first,
its answer swallowed (ODP's C{SERVER_SEND_PREPARE}).

A C{COM_STMT_EXECUTE} that does not rebind its parameter types (the
C{new_params_bound} byte is 0) only makes sense to a server that saw the types
before; when it goes to a server session that did not, the proxy puts back the
types the client bound last (L{with_bound_types}).
"""

from __future__ import annotations

from typing import Any

import attrs

from obproxy_tx.wire.packets import StmtPrepareOK

__all__ = ["PreparedStatement", "PreparedStatements", "param_types_of", "with_bound_types"]


@attrs.define
class PreparedStatement:
    """
    One statement a client prepared through the proxy.

    @ivar statement_id: the id the client uses.
    @ivar sql: the statement text (to prepare it again elsewhere).
    @ivar param_count: how many parameters it takes.
    @ivar column_count: how many columns its result has.
    @ivar param_types: the raw type bytes (2 per parameter) of the last
        execution that bound them, or C{None}.
    @ivar cursor_session: the server session holding an open cursor for it.
    @ivar long_data_session: the server session that received
        C{COM_STMT_SEND_LONG_DATA} since the last execute or reset.
    """

    statement_id: int
    sql: bytes
    param_count: int
    column_count: int
    param_types: bytes | None = None
    cursor_session: Any = None
    long_data_session: Any = None


class PreparedStatements:
    """
    The prepared statements of one client session, by client-visible id.
    """

    def __init__(self) -> None:
        self._next_id = 1
        self.by_id: dict[int, PreparedStatement] = {}

    def add(self, sql: bytes, prepare_ok: StmtPrepareOK) -> PreparedStatement:
        """
        Register a statement a server just prepared; give it the next client id.

        @param sql: its text.
        @param prepare_ok: the server's answer.
        @return: the statement (its L{PreparedStatement.statement_id} is the client's id).
        """
        statement = PreparedStatement(
            self._next_id, sql, prepare_ok.num_params, prepare_ok.num_columns
        )
        self._next_id += 1
        if self._next_id > 0xFFFFFFFF:
            self._next_id = 1
        self.by_id[statement.statement_id] = statement
        return statement

    def get(self, statement_id: int) -> PreparedStatement | None:
        """
        The statement with client id C{statement_id}, or C{None}.
        """
        return self.by_id.get(statement_id)

    def remove(self, statement_id: int) -> PreparedStatement | None:
        """
        Forget a statement; return it (or C{None} when unknown).
        """
        return self.by_id.pop(statement_id, None)

    def clear(self) -> None:
        """
        Forget every statement (COM_RESET_CONNECTION, COM_CHANGE_USER).
        """
        self.by_id.clear()

    def __len__(self) -> int:
        return len(self.by_id)


def param_types_of(raw_parameters: bytes, param_count: int) -> bytes | None:
    """
    The type bytes of an execute's parameter block when it binds them.

    Layout (without C{CLIENT_QUERY_ATTRIBUTES}, which the proxy never offers):
    NULL bitmap, C{new_params_bound} byte, then 2 type bytes per parameter.

    @param raw_parameters: the bytes after the execute's fixed header.
    @param param_count: the statement's parameter count.
    @return: the type bytes, or C{None} when this execute does not bind types.
    """
    if param_count == 0:
        return None
    flag_at = (param_count + 7) // 8
    if len(raw_parameters) <= flag_at or raw_parameters[flag_at] != 1:
        return None
    return raw_parameters[flag_at + 1 : flag_at + 1 + 2 * param_count]


def with_bound_types(raw_parameters: bytes, param_count: int, types: bytes) -> bytes:
    """
    Make an execute that does not bind types bind C{types}.

    @param raw_parameters: the bytes after the execute's fixed header.
    @param param_count: the statement's parameter count.
    @param types: the type bytes to bind (see L{param_types_of}).
    @return: the new parameter block.
    """
    flag_at = (param_count + 7) // 8
    if param_count == 0 or len(raw_parameters) <= flag_at or raw_parameters[flag_at] == 1:
        return raw_parameters
    return raw_parameters[:flag_at] + b"\x01" + types + raw_parameters[flag_at + 1 :]

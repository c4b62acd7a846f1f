"""
The proxy's own commands (C{PING PROXY}, C{SHOW PROXYSESSION}, ...).

Each command is an L{obproxy_tx.admin.interfaces.IAdminCommand} provider,
discovered as a Twisted plugin in L{obproxy_tx.plugins} and collected by
L{obproxy_tx.admin.registry.CommandRegistry}, which recognises statements
cheaply and turns a command's answer into wire packets.
"""

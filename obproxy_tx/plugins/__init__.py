"""
Our own Twisted plugin package: admin command plugins live here.

Any directory named C{obproxy_tx/plugins/} (without an C{__init__.py}) on
C{sys.path} is searched as well, so a third party adds a command by shipping
one module there; see L{twisted.plugin.pluginPackagePaths}.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))

"""
Sphinx extension for the obproxy_tx docs: diagrams drawn from the code at build time, and an
offline link inventory for the API reference.

  - The C{state-diagram} directive draws a state machine from its own transition table: the
    client session (C{MCS_*}, L{obproxy_tx.session.states.CLIENT_SESSION_TRANSITIONS}), the
    server session (C{MSS_*}, L{obproxy_tx.session.states.SERVER_SESSION_TRANSITIONS}) or the
    wire-level connection phases (L{obproxy_tx.wire.connection.render_diagram}). A page writes::

        ```{state-diagram} client-session
        ```

    and the build renders the table as it is in the checkout, so a diagram cannot drift from
    the machine.

  - The API reference is pydoctor's, run by C{pydoctor.sphinx_ext.build_apidocs}. Its links to
    Twisted and to the standard library need those projects' C{objects.inv}, which a build on a
    machine that reaches only package registries cannot download. L{write_inventory} writes one
    from the installed modules instead, pointing at the projects' published API pages, and the
    extension hands it to pydoctor with C{--intersphinx-file}.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import os
import pkgutil
import re
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from typing import Any, Dict, List, Tuple

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

TWISTED_API = "https://docs.twisted.org/en/stable/api/"
PYTHON_DOCS = "https://docs.python.org/3/"

#: Twisted packages walked recursively, and single modules, for the inventory.
TWISTED_PACKAGES = ("twisted.cred", "twisted.application", "twisted.logger")
TWISTED_MODULES = (
    "twisted.plugin",
    "twisted.internet.defer",
    "twisted.internet.ssl",
    "twisted.internet.protocol",
    "twisted.internet.interfaces",
    "twisted.internet.endpoints",
    "twisted.internet.task",
    "twisted.internet.error",
    "twisted.internet.address",
    "twisted.internet.base",
    "twisted.protocols.basic",
    "twisted.protocols.policies",
    "twisted.protocols.tls",
    "twisted.protocols.amp",
    "twisted.python.usage",
    "twisted.python.failure",
    "twisted.python.filepath",
)
#: Standard library modules whose names the docstrings may link to.
STDLIB_MODULES = (
    "asyncio",
    "collections",
    "collections.abc",
    "contextlib",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",
    "hashlib",
    "hmac",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "os",
    "pathlib",
    "re",
    "secrets",
    "signal",
    "socket",
    "ssl",
    "struct",
    "sys",
    "time",
    "typing",
    "uuid",
    "zlib",
)

#: Which diagram each C{state-diagram} argument draws.
DIAGRAMS = ("client-session", "server-session", "connection-phases")


def table_diagram(
    table: Mapping[Any, Mapping[Any, Enum]], initial: Enum, final: Enum | None = None
) -> str:
    """
    Draw a transition table as a mermaid C{stateDiagram-v2}.

    @param table: C{{state: {input: next state}}}, as in L{obproxy_tx.session.states}.
    @param initial: the state a new machine is in (an arrow from the start marker).
    @param final: the terminal state, if any (an arrow to the end marker).
    @return: the diagram text: one edge per (state, next state), labelled with the inputs
        that make that move, in the table's order.
    """
    edges: Dict[Tuple[str, str], List[str]] = {}
    for state, moves in table.items():
        for event, target in moves.items():
            edges.setdefault((state.name, target.name), []).append(event.name)
    lines = ["stateDiagram-v2", f"  [*] --> {initial.name}"]
    for (source, destination), labels in edges.items():
        lines.append(f"  {source} --> {destination}: {', '.join(labels)}")
    if final is not None:
        lines.append(f"  {final.name} --> [*]")
    return "\n".join(lines) + "\n"


def diagram_source(which: str) -> str:
    """
    The mermaid text of one of L{DIAGRAMS}, from the machine's table as it is now.

    @raise ValueError: C{which} is not one of L{DIAGRAMS}.
    """
    # Imported here: the extension module must load (for its tests) without Sphinx
    # having put the checkout on sys.path first.
    from obproxy_tx.session import states
    from obproxy_tx.wire.connection import render_diagram

    if which == "client-session":
        return table_diagram(
            states.CLIENT_SESSION_TRANSITIONS,
            states.ClientSessionState.MCS_INIT,
            states.ClientSessionState.MCS_CLOSED,
        )
    if which == "server-session":
        return table_diagram(
            states.SERVER_SESSION_TRANSITIONS,
            states.ServerSessionState.MSS_INIT,
            states.ServerSessionState.MSS_CLOSED,
        )
    if which == "connection-phases":
        return render_diagram("mermaid")
    raise ValueError(f"unknown diagram {which!r}: use one of {', '.join(DIAGRAMS)}")


class StateDiagram(Directive):
    """
    C{```{state-diagram} NAME```}: a mermaid diagram of one of L{DIAGRAMS}.
    """

    required_arguments = 1
    has_content = False

    def run(self) -> List[nodes.Node]:
        """
        Build the mermaid node (rendered by C{sphinxcontrib.mermaid}).
        """
        from sphinxcontrib.mermaid import mermaid

        try:
            code = diagram_source(self.arguments[0])
        except ValueError as e:
            raise self.error(str(e)) from None
        node = mermaid()
        node["code"] = code
        node["options"] = {}
        return [node]


def _public_names(module: Any, defined_here: bool = True) -> Iterator[Tuple[str, Any]]:
    # __all__, plus what the module itself defines (twisted.plugin's __all__ leaves IPlugin
    # out); with defined_here False, every public name that is not a module (the standard
    # library's hmac.compare_digest comes from _operator).
    names = list(getattr(module, "__all__", ()))
    for name, value in vars(module).items():
        if name.startswith("_") or name in names or inspect.ismodule(value):
            continue
        if not defined_here or getattr(value, "__module__", None) == module.__name__:
            names.append(name)
    for name in names:
        value = getattr(module, name, None)
        if value is not None:
            yield name, value


def _twisted_modules() -> Iterator[Any]:
    for name in TWISTED_MODULES:
        yield importlib.import_module(name)
    for package_name in TWISTED_PACKAGES:
        package = importlib.import_module(package_name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            leaf = info.name.rsplit(".", 1)[-1]
            # Tests and private modules are not in Twisted's published API pages.
            if leaf.startswith("_") or leaf == "test" or ".test." in info.name:
                continue
            try:
                yield importlib.import_module(info.name)
            except ImportError:
                continue


def twisted_entries() -> Iterator[Tuple[str, str, str]]:
    """
    The inventory entries of the Twisted API that the docstrings can link to.

    @return: C{(name, role, url)} triples; pydoctor names a class's page after the class and
        puts functions and attributes as anchors on their module's or class's page.
    """
    for module in _twisted_modules():
        base = module.__name__
        yield base, "py:module", f"{TWISTED_API}{base}.html"
        for name, value in _public_names(module):
            full = f"{base}.{name}"
            if inspect.isclass(value):
                yield full, "py:class", f"{TWISTED_API}{full}.html"
                for member in vars(value):
                    if not member.startswith("_"):
                        yield (
                            f"{full}.{member}",
                            "py:attribute",
                            f"{TWISTED_API}{full}.html#{member}",
                        )
            elif callable(value):
                yield full, "py:function", f"{TWISTED_API}{base}.html#{name}"
            else:
                yield full, "py:data", f"{TWISTED_API}{base}.html#{name}"


def stdlib_entries() -> Iterator[Tuple[str, str, str]]:
    """
    The inventory entries of the standard library: the builtins and L{STDLIB_MODULES}.

    @return: C{(name, role, url)} triples at docs.python.org's anchors.
    """
    for name in ("None", "True", "False", "Ellipsis", "NotImplemented"):
        yield name, "py:data", f"{PYTHON_DOCS}library/constants.html#{name}"
    for name, value in vars(builtins).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(value) and issubclass(value, BaseException):
            yield name, "py:exception", f"{PYTHON_DOCS}library/exceptions.html#{name}"
        elif callable(value):
            yield name, "py:function", f"{PYTHON_DOCS}library/functions.html#{name}"
    for module_name in STDLIB_MODULES:
        module = importlib.import_module(module_name)
        page = f"{PYTHON_DOCS}library/{module_name}.html"
        yield module_name, "py:module", f"{page}#module-{module_name}"
        for name, value in _public_names(module, defined_here=False):
            full = f"{module_name}.{name}"
            role = "py:class" if inspect.isclass(value) else "py:function"
            yield full, role, f"{page}#{full}"


def write_inventory(path: str, project: str, entries: Iterable[Tuple[str, str, str]]) -> None:
    """
    Write a Sphinx C{objects.inv} (version 2) with absolute URLs.

    @param path: the file to write.
    @param project: the project name in the header.
    @param entries: C{(name, role, url)} triples; the first entry for a name wins.
    """
    seen = set()
    lines = []
    for name, role, url in entries:
        if name in seen:
            continue
        seen.add(name)
        lines.append(f"{name} {role} 1 {url} -\n")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: installed\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode())
        f.write(zlib.compress("".join(lines).encode()))


def twisted_interfaces() -> List[str]:
    """
    The full names of the C{zope.interface} interfaces in the Twisted modules walked for the
    inventory (C{twisted.cred.credentials.ICredentials}, ...).
    """
    from zope.interface.interface import InterfaceClass

    found = []
    for module in _twisted_modules():
        for name, value in _public_names(module):
            if isinstance(value, InterfaceClass):
                found.append(f"{module.__name__}.{name}")
    return found


def _teach_pydoctor_interfaces(names: Iterable[str]) -> None:
    # pydoctor sees only our sources, so a class deriving from a Twisted interface
    # (IMySQLCredentials(ICredentials)) is not an interface to it, and every @implementer of
    # one is reported. Its zope.interface extension recognises interface bases by one regular
    # expression; add Twisted's interfaces to it.
    from pydoctor.extensions import zopeinterface

    known = "|".join(re.escape(name) + r"\Z" for name in sorted(set(names)))
    if known:
        pattern = zopeinterface.interface_prog.pattern
        zopeinterface.interface_prog = re.compile(f"{pattern}|{known}")


def _add_inventories(app: Sphinx) -> None:
    # Before pydoctor's own builder-inited hook (priority 490) reads pydoctor_args.
    if not app.builder or app.builder.name != "html":
        return
    directory = tempfile.mkdtemp(prefix="obproxy-docs-inv-")
    twisted = os.path.join(directory, "twisted.inv")
    python = os.path.join(directory, "python.inv")
    write_inventory(twisted, "Twisted", twisted_entries())
    write_inventory(python, "Python", stdlib_entries())
    _teach_pydoctor_interfaces(twisted_interfaces())
    app.config.pydoctor_args = [
        *app.config.pydoctor_args,
        f"--intersphinx-file={twisted}",
        f"--intersphinx-file={python}",
    ]


def _link_repository_files(app: Sphinx, doctree: nodes.document) -> None:
    # A page links a file of the checkout outside docs/ that MyST takes for a document
    # ([the example's README](../examples/command_plugin/README.md)): on GitHub the link
    # works as it is; here it becomes a download of that file, so the site has it too.
    env: BuildEnvironment = app.env
    for node in list(doctree.findall(addnodes.pending_xref)):
        if node.get("reftype") != "myst" or node.get("refdomain") != "doc":
            continue
        target = node["reftarget"]
        if target in env.found_docs:
            continue
        path = target if os.path.isabs(target) else os.path.join(app.srcdir, target)
        path = os.path.normpath(path + ".md")
        if not os.path.isfile(path):
            continue  # really missing: MyST warns, and the build fails
        here = os.path.dirname(env.doc2path(node.get("refdoc", env.docname)))
        download = addnodes.download_reference(
            "",
            "",
            *node.children,
            refdomain=None,
            reftype="myst",
            reftarget=os.path.relpath(path, here),
            refdoc=node.get("refdoc", env.docname),
            refexplicit=node.get("refexplicit", True),
        )
        node.replace_self(download)


def setup(app: Sphinx) -> Dict[str, Any]:
    """
    Register the C{state-diagram} directive, the inventory hook and the links to files of the
    checkout.
    """
    app.add_directive("state-diagram", StateDiagram)
    app.connect("builder-inited", _add_inventories, priority=400)
    # Before Sphinx's download collector (priority 500) reads the page's downloads.
    app.connect("doctree-read", _link_repository_files, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

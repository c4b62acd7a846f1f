"""
Where ALTER PROXYCONFIG saves the config items it changes, so that a restart
keeps them.

The file is a small YAML mapping of item names to values as text, the text
C{-o name=value} and ALTER PROXYCONFIG take::

    # Config items changed with ALTER PROXYCONFIG. ...
    client_max_connections: '100'
    default_inactivity_timeout: 10m

It lives where the config item C{altered_config_file} says (relative paths
are taken from the C{-c} file's directory, or the working directory without
C{-c}); by default next to the C{-c} file as C{<file>.altered.yaml}. Without
C{-c} and without C{altered_config_file} there is no such file: ALTER
PROXYCONFIG then changes runtime items for the running process only and
refuses items that need a restart.

At start the saved items are applied after the C{-c} file and before the
command line (C{-p}, C{-r}, C{-o}): ODP's precedence, command line over saved
over file (L{obproxy_tx.config.load_config}).

The file may hold secrets (C{metadata_password} in clear, verifiers), so it is
written with mode 0600, and atomically: a temporary file in the same
directory, flushed and synced, then renamed over the old one, so a crash
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Mapping

import attrs
import yaml

from obproxy_tx.config import (
    ITEMS,
    ConfigError,
    ProxyConfig,
    read_item_texts,
    with_item_values,
)

__all__ = [
    "DEFAULT_SUFFIX",
    "StoreError",
    "apply_saved",
    "read_saved",
    "read_text",
    "remove_or_restore",
    "render",
    "save_item",
    "store_path_for",
    "write_text",
]

DEFAULT_SUFFIX = ".altered.yaml"
"""Appended to the C{-c} file's path when C{altered_config_file} is empty."""

FILE_MODE = 0o600
"""Only the proxy's own user may read the file: it may hold secrets."""

_HEADER = (
    "# Config items changed with ALTER PROXYCONFIG, saved by obproxy_tx.\n"
    "# Applied at start after the -c file and before -p/-r/-o on the command line.\n"
    "# Values are text as -o name=value takes it. Edit only while the proxy is stopped.\n"
)


@attrs.define
class StoreError(Exception):
    """
    The saved-items file cannot be read or written.

    @ivar path: the file.
    @ivar reason: what went wrong, in words (the operating system's reason).
    """

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def store_path_for(config_file: str | None, altered_config_file: str) -> str:
    """
    Where ALTER PROXYCONFIG saves items.

    @param config_file: the C{-c} file, or C{None} without one.
    @param altered_config_file: the item of that name (C{""}: the default).
    @return: an absolute path, or C{""} when there is nowhere to save (no
        C{-c} file and no C{altered_config_file}).
    """
    if altered_config_file:
        if os.path.isabs(altered_config_file) or config_file is None:
            return os.path.abspath(altered_config_file)
        base = os.path.dirname(os.path.abspath(config_file))
        return os.path.normpath(os.path.join(base, altered_config_file))
    if config_file is None:
        return ""
    return os.path.abspath(config_file) + DEFAULT_SUFFIX


def read_text(path: str) -> str | None:
    """
    @param path: the saved-items file.
    @return: its text, or C{None} if it does not exist (nothing saved yet).
    @raise StoreError: it exists but cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(path, e.strerror or str(e)) from None
    except UnicodeDecodeError:
        raise StoreError(path, "not UTF-8 text") from None


def read_saved(path: str) -> dict[str, tuple[object, str]]:
    """
    The items saved in C{path}, converted and checked one by one.

    @param path: the saved-items file.
    @return: C{{name: (value, origin)}}; C{{}} when the file does not exist.
    @raise ConfigError: the file cannot be read, or holds a bad or unknown
        item, or one that may not be saved (C{altered_config_file}).
    """
    try:
        text = read_text(path)
    except StoreError as e:
        raise ConfigError(f"cannot read the saved config items: {e.reason}", origin=path) from None
    if text is None:
        return {}
    values = read_item_texts(text, path)
    for name, (_, origin) in values.items():
        if not ITEMS[name].alterable:
            raise ConfigError(
                "this item cannot be saved here; set it in the -c file or with -o",
                origin=origin,
                path=name,
            )
    return dict(values)


def apply_saved(config: ProxyConfig, path: str) -> ProxyConfig:
    """
    Apply the items saved in C{path}, unchecked (the caller checks the whole
    configuration once the command line is applied too).

    @param config: the configuration read from the file.
    @param path: the saved-items file.
    @return: the configuration with the saved values; C{config} itself if
        nothing is saved.
    @raise ConfigError: see L{read_saved}.
    """
    return with_item_values(config, read_saved(path))


def render(items: Mapping[str, str]) -> str:
    """
    The file's text for saved items.

    @param items: item name -> value text, in the order to write them.
    @return: YAML with a header comment; every value a YAML string.
    """
    body = yaml.safe_dump(
        {name: str(text) for name, text in items.items()},
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
    )
    return _HEADER + (body if items else "")


def write_text(path: str, text: str) -> None:
    """
    Replace C{path} with C{text} atomically, mode 0600.

    @raise StoreError: the directory cannot be written, the disk is full, ...
        (C{path} is then unchanged).
    """
    directory = os.path.dirname(path) or "."
    name = os.path.basename(path)
    try:
        # mkstemp creates the file with mode 0600 already; the temporary file
        # is in the same directory so that the rename cannot cross devices.
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise StoreError(path, e.strerror or str(e)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise StoreError(path, e.strerror or str(e)) from None
    _sync_directory(directory)


def _sync_directory(directory: str) -> None:
    """
    Make the rename durable where the platform allows it (best effort: a
    failure here cannot undo a rename that already happened).
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def save_item(path: str, name: str, text: str) -> str | None:
    """
    Save one item, keeping the others already saved.

    @param path: the saved-items file.
    @param name: the item.
    @param text: its new value as text (already checked).
    @return: the file's previous text (C{None}: there was no file), for
        L{remove_or_restore}.
    @raise StoreError: the file cannot be read, parsed or written; it is
        then unchanged.
    """
    previous = read_text(path)
    items: dict[str, str] = {}
    if previous is not None:
        try:
            loaded = yaml.safe_load(previous)
        except yaml.YAMLError as e:
            raise StoreError(path, f"invalid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise StoreError(path, "not a mapping of config items")
        for key, value in (loaded or {}).items():
            items[str(key)] = _as_text(value)
    items.pop(name, None)  # re-added last: the file reads in the order of changes
    items[name] = text
    write_text(path, render(items))
    return previous


def remove_or_restore(path: str, previous: str | None) -> None:
    """
    Undo L{save_item}: put the previous text back, or remove the file if
    there was none.

    @raise StoreError: that failed too.
    """
    if previous is not None:
        write_text(path, previous)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise StoreError(path, e.strerror or str(e)) from None


def _as_text(value: object) -> str:
    """
    A hand-edited YAML scalar as the text C{-o} would take.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(piece) for piece in value)
    return str(value)

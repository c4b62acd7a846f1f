"""
Sphinx configuration of the obproxy_tx docs site.

Build it with C{make docs} (warnings are errors): the Markdown pages through MyST, the API
reference with pydoctor from the epytext docstrings (into C{api/}), the state diagrams from the
machines' own tables (C{docs/_ext/obproxy_docs.py}).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
for path in (str(ROOT), str(DOCS / "_ext")):
    if path not in sys.path:
        sys.path.insert(0, path)

from obproxy_tx import __version__  # noqa: E402 (after the sys.path fix)

project = "obproxy_tx"
author = "the obproxy_tx authors"
copyright = "the obproxy_tx authors"  # noqa: A001 (Sphinx's name)
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.intersphinx",
    "sphinxcontrib.mermaid",
    "pydoctor.sphinx_ext.build_apidocs",
    "obproxy_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]
# Every page is in a toctree; a page left out is a warning (and so an error).
myst_heading_anchors = 3
myst_fence_as_directive = ["mermaid"]
myst_enable_extensions = ["colon_fence"]

html_theme = "alabaster"
html_title = f"obproxy_tx {__version__}"

# No remote inventories: the build runs where only package registries are reachable. The API
# reference's links to Twisted and the standard library come from inventories written from the
# installed modules (obproxy_docs); pydoctor adds its own inventory for links into api/.
intersphinx_mapping: dict[str, tuple[str, object]] = {}
intersphinx_disabled_reftypes = ["*"]

pydoctor_args = [
    "--html-output={outdir}/api",
    "--docformat=epytext",
    "--project-name=obproxy_tx",
    f"--project-version={__version__}",
    f"--project-base-dir={ROOT}",
    "--privacy=HIDDEN:obproxy_tx.*.test*",
    str(ROOT / "obproxy_tx"),
]
pydoctor_url_path = "api/"

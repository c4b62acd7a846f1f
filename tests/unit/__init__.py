"""Tests for obproxy_tx (a package, so test modules in different folders may share a name)."""

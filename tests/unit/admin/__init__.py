"""Tests for obproxy_tx.admin (a package, so test modules in different folders may share a name)."""

"""Unit tests of obproxy_tx.ha."""

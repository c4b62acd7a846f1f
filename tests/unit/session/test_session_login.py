"""
Tests for L{obproxy_tx.session.login}: ODP's login user name forms.
"""

from __future__ import annotations

import pytest

from obproxy_tx.session.login import (
    LoginName,
    LoginNameError,
    SpecialUser,
    parse_login_name,
    parse_username_separator,
)


def _parse(raw: str, **kwargs: object) -> LoginName:
    return parse_login_name(raw, default_cluster="obcluster", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "full_name"),
    [
        ("root", "root@sys#obcluster"),
        ("root@sys", "root@sys#obcluster"),
        ("app@t1", "app@t1#obcluster"),
        ("app#c2", "app@sys#c2"),
        ("app@t1#c2", "app@t1#c2"),
        ("app@t1#c2:7", "app@t1#c2:7"),
        ("app@t1#c2:", "app@t1#c2"),
        ("app@", "app@sys#obcluster"),
        ("a@b@c", "a@b@c#obcluster"),
        ("c2:t1:app", "app@t1#c2"),
        ("c2:t1:app:7", "app@t1#c2:7"),
        ("c2-t1-app", "app@t1#c2"),
        ("c2-t1-app-7", "app@t1#c2:7"),
        ("c2-t1-app:7", "app@t1#c2:7"),
        ("c2.t1.app", "app@t1#c2"),
        ("first.last", "first.last@sys#obcluster"),
        ("a:b-c", "a:b-c@sys#obcluster"),
    ],
)
def test_full_names(raw: str, full_name: str) -> None:
    """
    Each spelling ODP accepts resolves to the canonical user@tenant#cluster[:id].
    """
    assert _parse(raw).full_name == full_name


def test_standard_form_parts() -> None:
    """
    The standard form fills user, tenant, cluster and cluster id and records
    which parts the client gave.
    """
    name = _parse("app@t1#c2:7")
    assert name == LoginName("app", "t1", "c2", 7, True, True, None)
    assert name.user_tenant == "app@t1"
    assert name.is_full
    assert str(name) == "app@t1#c2:7"


def test_defaults_are_recorded_as_not_given() -> None:
    """
    A bare user gets tenant sys and the default cluster, flagged as defaults
    (so enable_full_username can refuse it).
    """
    name = _parse("root")
    assert (name.tenant, name.cluster) == ("sys", "obcluster")
    assert not name.tenant_given
    assert not name.cluster_given
    assert not name.is_full


def test_separator_form_records_separator() -> None:
    """
    The separator form remembers which separator it used.
    """
    name = _parse("c2-t1-app")
    assert name.separator == "-"
    assert name.is_full


def test_first_configured_separator_that_appears_twice_wins() -> None:
    """
    Separators are tried in config order; one that appears only once is skipped.
    """
    assert _parse("a.b.c-d").full_name == "c-d@b#a"
    assert _parse("a-b-c.d").full_name == "c.d@b#a"
    assert _parse("a:b.c.d").full_name == "d@c#a:b"


def test_separator_form_needs_no_at_or_hash() -> None:
    """
    A name with @ or # is always the standard form, however many separators it has.
    """
    assert _parse("a:b:c@t").full_name == "a:b:c@t#obcluster"


def test_custom_separator_config() -> None:
    """
    A custom username_separator changes which characters split names.
    """
    assert _parse("c2/t1/app", username_separator="/").full_name == "app@t1#c2"
    assert _parse("c2:t1:app", username_separator="/").full_name == "c2:t1:app@sys#obcluster"
    assert _parse("c2:t1:app", username_separator="").user == "c2:t1:app"
    assert _parse("c2|t1|app", username_separator=("|",)).cluster == "c2"


def test_per_cluster_default_tenant() -> None:
    """
    A missing tenant takes the named cluster's default tenant when one is configured.
    """
    defaults = {"c2": "t9"}
    assert _parse("app#c2", tenant_defaults=defaults).tenant == "t9"
    assert _parse("app", tenant_defaults=defaults).tenant == "sys"
    assert _parse("app", default_tenant="t0").tenant == "t0"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty user part"),
        ("@sys", "empty user part"),
        ("#c", "empty user part"),
        ("c:t:", "empty user part"),
        ("app#c2@t1", "must come after"),
        ("app@t1#c2:x", "cluster id 'x'"),
        ("c.t.first.last", "cluster id 'last'"),
    ],
)
def test_bad_names(raw: str, message: str) -> None:
    """
    Names ODP cannot parse raise LoginNameError saying what is wrong.
    """
    with pytest.raises(LoginNameError, match=message):
        _parse(raw)


def test_empty_default_cluster_is_an_error() -> None:
    """
    With no cluster configured and none named, the login cannot be resolved.
    """
    with pytest.raises(LoginNameError, match="empty"):
        parse_login_name("root", default_cluster="")


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        ("root@proxysys", SpecialUser.PROXYSYS_ROOT),
        ("inspector@proxysys", SpecialUser.PROXYSYS_INSPECTOR),
        ("root@sys", SpecialUser.ROOT_SYS),
        ("root@sys#other", SpecialUser.ROOT_SYS),
        ("root", SpecialUser.ROOT_SYS),
        ("proxyro@sys", SpecialUser.PROXYRO_SYS),
        ("root@t1", None),
        ("app@proxysys", None),
    ],
)
def test_special_users(raw: str, special: SpecialUser | None) -> None:
    """
    Special users are recognised by user@tenant whatever the cluster.
    """
    assert _parse(raw).special is special


def test_proxysys_tenant() -> None:
    """
    Any user of tenant proxysys is a local proxy user.
    """
    assert _parse("app@proxysys").is_proxysys
    assert not _parse("root").is_proxysys


def test_parse_username_separator() -> None:
    """
    The config item is single characters joined by ';'; @, # and blanks are refused.
    """
    assert parse_username_separator(":;-;.") == (":", "-", ".")
    assert parse_username_separator("") == ()
    for bad in ("::", "@", "#", " ", ":;"):
        with pytest.raises(ValueError):
            parse_username_separator(bad)

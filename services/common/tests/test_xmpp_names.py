"""The XMPP naming rule (services/common/xmpp_names.py) and the services' settings that use it."""

from __future__ import annotations

from services.bridge import config as bridge_config
from services.common import xmpp_names
from services.focus import config as focus_config
from services.recorder import config as recorder_config
from services.web import config as web_config
from services.xmpp import config as xmpp_config


def test_hosts_follow_the_domain_in_both_layouts() -> None:
    assert xmpp_names.auth_domain("example.org") == "auth.example.org"
    assert xmpp_names.muc_domain("example.org") == "muc.example.org"
    assert xmpp_names.internal_muc_domain("example.org") == "internal-muc.example.org"
    assert xmpp_names.focus_component("example.org") == "focus.example.org"
    assert xmpp_names.muc_domain("example.org", xmpp_names.DEBIAN) == "conference.example.org"
    assert xmpp_names.internal_muc_domain("example.org", xmpp_names.DEBIAN) == "internal.auth.example.org"


def test_fill_hosts_derives_only_what_is_empty() -> None:
    filled = xmpp_names.fill_hosts(
        {"domain": "d.org", "auth-domain": "", "muc-domain": "rooms.d.org"}, "auth-domain", "muc-domain"
    )
    assert filled == {"domain": "d.org", "auth-domain": "auth.d.org", "muc-domain": "rooms.d.org"}
    assert xmpp_names.fill_hosts({"domain": "d.org", "auth_domain": "a.d.org"}, "auth-domain") == {
        "domain": "d.org",
        "auth_domain": "a.d.org",
    }
    assert xmpp_names.fill_hosts({"auth-domain": ""}, "auth-domain") == {"auth-domain": ""}  # no domain
    assert xmpp_names.fill_hosts("x", "auth-domain") == "x"


def test_every_service_names_its_hosts_after_xmpp_domain() -> None:
    env = {"XMPP_DOMAIN": "example.org"}
    focus = focus_config.load(environ={**env, "JICOFO_AUTH_PASSWORD": "x"})
    assert focus.xmpp.jid == "focus@auth.example.org/focus"
    assert (focus.xmpp.muc_domain, focus.brewery_jid) == ("muc.example.org", "jvbbrewery@internal-muc.example.org")
    broker = xmpp_config.load(environ={**env, "JICOFO_AUTH_PASSWORD": "x", "JVB_AUTH_PASSWORD": "y"})
    assert (broker.auth_domain, broker.muc_domain, broker.internal_muc_domain, broker.focus_address) == (
        "auth.example.org",
        "muc.example.org",
        "internal-muc.example.org",
        "focus.example.org",
    )
    web = web_config.load(environ=env)
    assert (web.xmpp.auth_domain, web.xmpp.muc_domain, web.focus_address) == (
        "auth.example.org",
        "muc.example.org",
        "focus.example.org",
    )
    recorder = recorder_config.load(environ={**env, "JIBRI_XMPP_PASSWORD": "x"})
    assert recorder.xmpp.jid.startswith("jibri@auth.example.org/")
    assert recorder.xmpp.brewery_jid == "jibribrewery@internal-muc.example.org"
    bridge = bridge_config.load(environ=env).xmpp
    assert (bridge.auth_domain, bridge.internal_muc_domain) == ("auth.example.org", "internal-muc.example.org")


def test_a_host_set_on_its_own_wins() -> None:
    env = {"XMPP_DOMAIN": "example.org", "XMPP_MUC_DOMAIN": "conference.example.org", "JICOFO_AUTH_PASSWORD": "x"}
    assert focus_config.load(environ=env).xmpp.muc_domain == "conference.example.org"

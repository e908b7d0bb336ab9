from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.config import (
    ConfigError,
    EnvVar,
    NetworkList,
    Section,
    load_config,
    load_or_exit,
    split_list,
)


class Public(Section):
    port: int = 9090
    tls_port: int | None = None


class HttpServers(Section):
    public: Public = Public()


class Websockets(Section):
    enabled: bool = False
    domain: str = ""
    server_id: str = "default-id"


class Videobridge(Section):
    http_servers: HttpServers = HttpServers()
    websockets: Websockets = Websockets()
    advertise_ips: list[str] = []


class Root(Section):
    videobridge: Videobridge


REFERENCE = """
videobridge {
  # the public HTTP server
  http-servers { public { port = 9090 } }
  websockets { enabled = true, domain = "example.com:443", server-id = jvb1 }
  advertise-ips = []
}
"""

ENV = [
    EnvVar("JVB_PUBLIC_PORT", "videobridge.http-servers.public.port"),
    EnvVar("JVB_WS_SERVER_ID", "videobridge.websockets.server-id"),
    EnvVar("JVB_ADVERTISE_IPS", "videobridge.advertise-ips", split_list),
]


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "reference.conf"
    path.write_text(REFERENCE)
    return path


def test_defaults_come_from_the_reference_file(reference: Path) -> None:
    cfg = load_config(Root, reference, ENV, environ={})
    assert cfg.videobridge.http_servers.public.port == 9090
    assert cfg.videobridge.websockets.enabled is True
    assert cfg.videobridge.websockets.domain == "example.com:443"
    assert cfg.videobridge.websockets.server_id == "jvb1"


def test_operator_file_then_environment_override(reference: Path, tmp_path: Path) -> None:
    operator = tmp_path / "jvb.conf"
    operator.write_text(
        "videobridge.websockets.server-id = jvb7\nvideobridge.http-servers.public.port = 9191"
    )
    cfg = load_config(
        Root,
        reference,
        ENV,
        config_file=operator,
        environ={"JVB_PUBLIC_PORT": "9292", "JVB_ADVERTISE_IPS": "10.0.0.1, 192.0.2.7"},
    )
    assert cfg.videobridge.websockets.server_id == "jvb7"  # file beats reference
    assert cfg.videobridge.http_servers.public.port == 9292  # environment beats file
    assert cfg.videobridge.advertise_ips == ["10.0.0.1", "192.0.2.7"]


def test_empty_environment_value_keeps_the_default(reference: Path) -> None:
    cfg = load_config(Root, reference, ENV, environ={"JVB_PUBLIC_PORT": ""})
    assert cfg.videobridge.http_servers.public.port == 9090


def test_bad_value_names_the_setting_and_the_variable(reference: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(Root, reference, ENV, environ={"JVB_PUBLIC_PORT": "ninety"})
    assert err.value.setting == "videobridge.http-servers.public.port"
    assert err.value.env == "JVB_PUBLIC_PORT"
    assert "videobridge.http-servers.public.port" in str(err.value)
    assert "$JVB_PUBLIC_PORT" in str(err.value)
    assert "'ninety'" in str(err.value)


def test_unknown_key_in_a_file_is_an_error(reference: Path, tmp_path: Path) -> None:
    operator = tmp_path / "jvb.conf"
    operator.write_text("videobridge.websockets.sever-id = typo")
    with pytest.raises(ConfigError) as err:
        load_config(Root, reference, ENV, config_file=operator, environ={})
    assert err.value.setting == "videobridge.websockets.sever-id"


def test_unparsable_file_is_reported(reference: Path, tmp_path: Path) -> None:
    operator = tmp_path / "jvb.conf"
    operator.write_text("videobridge { websockets { ")
    with pytest.raises(ConfigError) as err:
        load_config(Root, reference, ENV, config_file=operator, environ={})
    assert str(operator) in str(err.value)


def test_load_or_exit_prints_one_line_and_exits_2(
    reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        load_or_exit(lambda: load_config(Root, reference, ENV, environ={"JVB_PUBLIC_PORT": "x"}), "bridge")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("bridge: invalid setting videobridge.http-servers.public.port")
    assert err.count("\n") == 1


class Networks(Section):
    exempt: NetworkList = []


def test_a_network_list_keeps_its_entries_and_refuses_one_that_does_not_parse() -> None:
    assert Networks(exempt=["10.0.0.1/8", "::1/128"]).exempt == ["10.0.0.1/8", "::1/128"]
    with pytest.raises(ValidationError, match="not-a-network"):
        Networks(exempt=["127.0.0.1/32", "not-a-network"])

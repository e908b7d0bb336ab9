"""The recorder's settings: ``reference.conf`` (root ``recorder``), an operator file, environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from services.common import xmpp_names
from services.common.config import EnvVar, Section, load_config, split_list

REFERENCE = Path(__file__).with_name("reference.conf")


class XmppSettings(Section):
    server: str
    port: int = Field(ge=1, le=65535)
    domain: str = Field(min_length=1)
    auth_domain: str = Field(min_length=1)
    internal_muc_domain: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: str = Field(min_length=1)
    brewery_muc: str = Field(min_length=1)
    nick: str
    iq_timeout: float = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _derived_hosts(cls, data: Any) -> Any:
        return xmpp_names.fill_hosts(data, "auth-domain", "internal-muc-domain")

    @property
    def jid(self) -> str:
        return f"{self.username}@{self.auth_domain}/{self.the_nick}"

    @property
    def the_nick(self) -> str:
        return self.nick or socket.gethostname().split(".")[0] or "recorder"

    @property
    def brewery_jid(self) -> str:
        return f"{self.brewery_muc}@{self.internal_muc_domain}"


class CompositeSettings(Section):
    width: int = Field(ge=64, le=3840, multiple_of=2)
    height: int = Field(ge=64, le=2160, multiple_of=2)
    fps: int = Field(ge=1, le=60)
    latency: float = Field(ge=0.1, le=10)
    video_bitrate: int = Field(ge=50_000)
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]
    file_rate_control: Literal["qp", "crf"]
    qp: int = Field(ge=0, le=51)
    crf: int = Field(ge=0, le=51)


class HttpSettings(Section):
    host: str
    port: int = Field(ge=0, le=65535)
    public_url: str


class RecorderSettings(Section):
    xmpp: XmppSettings
    capacity: int = Field(ge=1, le=1000)
    output_dir: Path
    rtmp_base_url: str
    rtmp_allowed_networks: list[str]
    rtmp_allowed_urls: list[str]
    rtmp_resolve_timeout: float = Field(gt=0, le=60)
    max_duration: float = Field(ge=0)
    min_free_bytes: int = Field(ge=0)
    ice_host_addresses: list[str]
    composite: CompositeSettings
    layout: Literal["grid", "speaker"]
    bridge_channel: Literal["speaker", "always", "never"]
    bridge_channel_origin: str
    max_receive_bitrate: int = Field(ge=100_000, le=1_000_000_000)
    http: HttpSettings

    @model_validator(mode="after")
    def _stream_policy(self) -> RecorderSettings:
        from .stream_policy import StreamPolicy

        StreamPolicy.from_settings(self.rtmp_allowed_networks, self.rtmp_allowed_urls)  # ValueError
        return self


class RecorderConfig(Section):
    recorder: RecorderSettings


ENV_VARS = [
    EnvVar("XMPP_SERVER", "recorder.xmpp.server"),
    EnvVar("XMPP_PORT", "recorder.xmpp.port", int),
    EnvVar("XMPP_DOMAIN", "recorder.xmpp.domain"),
    EnvVar("XMPP_AUTH_DOMAIN", "recorder.xmpp.auth-domain"),
    EnvVar("XMPP_INTERNAL_MUC_DOMAIN", "recorder.xmpp.internal-muc-domain"),
    EnvVar("JIBRI_XMPP_USER", "recorder.xmpp.username"),
    EnvVar("JIBRI_XMPP_PASSWORD", "recorder.xmpp.password"),
    EnvVar("JIBRI_BREWERY_MUC", "recorder.xmpp.brewery-muc"),
    EnvVar("JIBRI_INSTANCE_ID", "recorder.xmpp.nick"),
    EnvVar("RECORDER_CAPACITY", "recorder.capacity", int),
    EnvVar("RECORDER_MAX_DURATION", "recorder.max-duration", float),
    EnvVar("RECORDER_MIN_FREE_BYTES", "recorder.min-free-bytes", int),
    EnvVar("JIBRI_RECORDING_DIR", "recorder.output-dir"),
    EnvVar("RECORDER_RTMP_BASE_URL", "recorder.rtmp-base-url"),
    EnvVar("RECORDER_RTMP_ALLOWED_NETWORKS", "recorder.rtmp-allowed-networks", split_list),
    EnvVar("RECORDER_RTMP_ALLOWED_URLS", "recorder.rtmp-allowed-urls", split_list),
    EnvVar("RECORDER_ICE_HOST_ADDRESSES", "recorder.ice-host-addresses", split_list),
    EnvVar("RECORDER_COMPOSITE_WIDTH", "recorder.composite.width", int),
    EnvVar("RECORDER_COMPOSITE_HEIGHT", "recorder.composite.height", int),
    EnvVar("RECORDER_COMPOSITE_FPS", "recorder.composite.fps", int),
    EnvVar("RECORDER_COMPOSITE_FILE_RATE_CONTROL", "recorder.composite.file-rate-control"),
    EnvVar("RECORDER_COMPOSITE_QP", "recorder.composite.qp", int),
    EnvVar("RECORDER_COMPOSITE_CRF", "recorder.composite.crf", int),
    EnvVar("RECORDER_LAYOUT", "recorder.layout"),
    EnvVar("RECORDER_BRIDGE_CHANNEL", "recorder.bridge-channel"),
    EnvVar("RECORDER_BRIDGE_CHANNEL_ORIGIN", "recorder.bridge-channel-origin"),
    EnvVar("RECORDER_MAX_RECEIVE_BITRATE", "recorder.max-receive-bitrate", int),
    EnvVar("RECORDER_HTTP_HOST", "recorder.http.host"),
    EnvVar("RECORDER_HTTP_PORT", "recorder.http.port", int),
    EnvVar("RECORDER_PUBLIC_HTTP_URL", "recorder.http.public-url"),
]


def load(config_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> RecorderSettings:
    env = os.environ if environ is None else environ
    config_file = config_file or env.get("RECORDER_CONFIG") or None
    return load_config(RecorderConfig, REFERENCE, ENV_VARS, config_file=config_file, environ=env).recorder

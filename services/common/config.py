"""Configuration loading shared by every Parley service.

Each service keeps one reference file (HOCON, the format Jitsi's services use) that documents every
setting with its default. At start a service reads, in order, with later sources winning:

1. its reference file (``services/<name>/reference.conf``);
2. an optional operator file (``--config PATH`` or the service's ``*_CONFIG`` variable), same shape;
3. environment variables, named after docker-jitsi-meet where one exists (``JVB_PORT``...).

The merged tree is validated by a pydantic model. A bad value raises :class:`ConfigError`, whose
message names the setting (its dotted HOCON path, and the environment variable when the value came
from one), and the service exits with status 2 before opening any socket.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pyhocon import ConfigFactory, ConfigTree
from pyhocon.exceptions import ConfigException

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A setting is missing, malformed or out of range. ``setting`` is its dotted path."""

    def __init__(self, setting: str, message: str, env: str | None = None) -> None:
        self.setting = setting
        self.env = env
        where = f"{setting} (from ${env})" if env else setting
        super().__init__(f"invalid setting {where}: {message}")


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Section(BaseModel):
    """Base of every config model: HOCON keys are kebab-case, unknown keys are an error."""

    model_config = ConfigDict(alias_generator=_kebab, populate_by_name=True, extra="forbid", frozen=True)


def split_list(value: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; the form docker-jitsi-meet uses for list variables."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _networks(value: list[str]) -> list[str]:
    for net in value:
        ipaddress.ip_network(net, strict=False)  # ValueError names the bad one
    return value


NetworkList = Annotated[list[str], AfterValidator(_networks)]
"""A setting that lists CIDR networks (host bits allowed): one that does not parse is an error."""


@dataclass(frozen=True)
class EnvVar:
    """Maps one environment variable onto one setting (a dotted HOCON path)."""

    name: str
    path: str
    convert: Callable[[str], Any] = str


def _as_plain(tree: Any) -> Any:
    if isinstance(tree, ConfigTree):
        return {k: _as_plain(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_as_plain(v) for v in tree]
    return tree


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_hocon_file(path: Path) -> dict[str, Any]:
    try:
        return _as_plain(ConfigFactory.parse_file(str(path), resolve=True))
    except (ConfigException, OSError, Exception) as exc:  # pyhocon raises pyparsing errors too
        raise ConfigError(str(path), f"cannot read config file: {exc}") from exc


def load_config(
    model: type[M],
    reference: Path,
    env_vars: list[EnvVar] = (),  # type: ignore[assignment]
    *,
    config_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> M:
    """Reference file, then operator file, then environment; validated by ``model``."""
    environ = os.environ if environ is None else environ
    tree = parse_hocon_file(reference)
    if config_file:
        tree = _merge(tree, parse_hocon_file(Path(config_file)))
    origin: dict[str, str] = {}
    for var in env_vars:
        raw = environ.get(var.name)
        if raw is None or raw == "":
            continue
        try:
            value = var.convert(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(var.path, f"{raw!r}: {exc}", env=var.name) from exc
        _set_path(tree, var.path, value)
        origin[var.path] = var.name
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        value = first.get("input")
        detail = first["msg"]
        if not isinstance(value, dict | list):
            detail = f"{detail} (got {value!r})"
        raise ConfigError(path, detail, env=origin.get(path)) from exc


def load_or_exit(loader: Callable[[], M], service: str) -> M:
    """Run a config loader; on a bad setting print one clear line and exit with status 2."""
    try:
        return loader()
    except ConfigError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc

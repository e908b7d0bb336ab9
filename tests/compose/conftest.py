"""One compose stack per test session, started the way README.md tells a user to start it.

The session fixture copies the project's files into a fresh directory (as a checkout would be),
runs the README's commands there (``docker compose`` becomes Debian's ``docker-compose`` when the
plugin is absent) against podman's Docker API, with free ports in ``.env`` so that nothing else on
the machine is disturbed, and always takes the project down at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.compose.engine import (
    REPO,
    ComposeProject,
    EngineError,
    PodmanService,
    ensure_debian_base,
    missing_tools,
)
from tests.integration.harness import free_block

SERVICES = ["redis", "xmpp", "bridge", "focus", "web", "turn", "nginx"]
BRIDGE_SLOTS = 5  # three replicas, and room for a restarted one
TURN_RELAY_SLOTS = 20  # coturn's relay ports in the tests


def readme_blocks() -> list[list[str]]:
    """The shell blocks of README.md's "Docker Compose" section, as lists of command lines."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Docker Compose", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [[line for line in b.splitlines() if line.strip() and not line.startswith("#")] for b in blocks]


def docker_compose_word() -> str:
    """``docker compose`` when the plugin exists, else Debian's ``docker-compose``."""
    if shutil.which("docker"):
        ok = subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
        if ok:
            return "docker compose"
    return "docker-compose"


@dataclass
class Stack:
    project: ComposeProject
    dir: Path
    env: dict[str, str]
    compose_word: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def front(self) -> str:
        return f"https://localhost:{self.env['HTTPS_PORT']}"

    @property
    def plain_front(self) -> str:
        return f"http://127.0.0.1:{self.env['HTTP_PORT']}"

    @property
    def focus(self) -> str:
        return f"http://127.0.0.1:{self.env['JICOFO_HTTP_PORT']}"

    def run_readme_line(self, line: str, timeout: float = 1800) -> str:
        command = line.replace("docker compose", self.compose_word)
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.dir,
            env=self.project.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise EngineError(
                f"README command {line!r} exited with {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{self.project.logs()}"
            )
        return result.stdout

    def bridge_ids(self) -> dict[str, str]:
        """server id -> container name of every running bridge."""
        import json

        out = {}
        for name in self.project.container_names("bridge"):
            with contextlib.suppress(EngineError, ValueError, KeyError):
                state = json.loads(self.project.podman("exec", name, "cat", "/tmp/parley-bridge.json"))
                out[str(state["server_id"])] = name
        return out


def project_files(target: Path) -> None:
    """The repository's tracked files (what a user's checkout has), plus the build CA bundle."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True
    )
    if result.returncode != 0:  # not a git checkout: the tree without what builds and runs leave
        skip = shutil.ignore_patterns(
            ".git", ".venv", "node_modules", "dist", "run", "artifacts", "__pycache__"
        )
        shutil.copytree(REPO, target, ignore=skip, symlinks=True, dirs_exist_ok=True)
        listed = []
    else:
        listed = result.stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = REPO / rel
        if not src.is_file() or rel.startswith(("services/web/node_modules", "services/web/dist")):
            continue
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if (
        host_ca.is_file() and (target / "config" / "build-ca").is_dir()
    ):  # image builds reach the registries through this machine's egress proxy
        shutil.copyfile(host_ca, target / "config" / "build-ca" / "host-ca-bundle.crt")


def stack_env(base: int) -> dict[str, str]:
    ports = {
        "HTTP_PORT": base,
        "HTTPS_PORT": base + 1,
        "XMPP_C2S_PORT": base + 2,
        "XMPP_HTTP_PORT": base + 3,
        "JICOFO_HTTP_PORT": base + 4,
        "WEB_HTTP_PORT": base + 5,
        "REDIS_PORT": base + 6,
    }
    udp, private, public = base + 7, base + 7 + BRIDGE_SLOTS, base + 7 + 2 * BRIDGE_SLOTS
    env = {k: str(v) for k, v in ports.items()}
    env.update(
        {
            "JVB_PORT": f"{udp}-{udp + BRIDGE_SLOTS - 1}",
            "JVB_COLIBRI_PORT": f"{private}-{private + BRIDGE_SLOTS - 1}",
            "JVB_PUBLIC_PORT": f"{public}-{public + BRIDGE_SLOTS - 1}",
            "PUBLIC_URL": f"https://localhost:{ports['HTTPS_PORT']}",
            "JVB_ADVERTISE_IPS": "127.0.0.1",
            "JICOFO_AUTH_PASSWORD": secrets.token_hex(16),
            "JVB_AUTH_PASSWORD": secrets.token_hex(16),
            "TURN_CREDENTIALS": secrets.token_hex(16),
            "TURN_PORT": str(base + 7 + 3 * BRIDGE_SLOTS),
            "TURNS_PORT": str(base + 8 + 3 * BRIDGE_SLOTS),
            "TURN_RELAY_PORTS": f"{base + 9 + 3 * BRIDGE_SLOTS}-{base + 8 + 3 * BRIDGE_SLOTS + TURN_RELAY_SLOTS}",
            "ENABLE_HTTP_REDIRECT": "1",
            "ENABLE_IPV6": "1" if Path("/proc/net/if_inet6").exists() else "0",
        }
    )
    return env


def edit_env_file(path: Path, values: dict[str, str]) -> None:
    """What the user does after ``cp .env.example .env``: set the values."""
    lines = path.read_text().splitlines()
    seen = set()
    out = []
    for line in lines:
        key = line.lstrip("#").split("=", 1)[0].strip()
        if "=" in line and key in values:
            out.append(f"{key}={values[key]}")
            seen.add(key)
        else:
            out.append(line)
    out += [f"{k}={v}" for k, v in values.items() if k not in seen]
    path.write_text("\n".join(out) + "\n")


@pytest.fixture(scope="session")
def compose_stack() -> Iterator[Stack]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (./parley test installs them)")
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap builds the base image, podman runs host-network containers")
    workdir = Path(tempfile.mkdtemp(prefix="parley-compose-"))
    ensure_debian_base(workdir)
    engine = PodmanService(workdir).start()
    project_dir = workdir / "parley"
    project_files(project_dir)
    project = ComposeProject(engine, project_dir, f"parleytest{os.getpid()}")
    stack = Stack(project, project_dir, stack_env(free_block(9 + 3 * BRIDGE_SLOTS + TURN_RELAY_SLOTS)), docker_compose_word())
    try:
        project.start_healthchecks()
        first = readme_blocks()[0]
        for line in first:
            started = time.monotonic()
            stack.run_readme_line(line)
            stack.timings[line] = time.monotonic() - started
            if line.startswith("cp .env.example .env"):
                edit_env_file(project_dir / ".env", stack.env)
        project.wait_healthy(SERVICES)
        yield stack
    finally:
        project.down()
        project.remove_images()
        engine.stop()
        shutil.rmtree(workdir, ignore_errors=True)

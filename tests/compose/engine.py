"""A container engine for the compose tests: Debian's podman serving the Docker API, driven by
Debian's ``docker-compose`` (v1) exactly as a user drives Docker.

- :func:`ensure_debian_base` builds ``debian:bookworm-slim`` locally with debootstrap when it
  cannot be pulled (``debootstrap --variant=minbase bookworm`` then ``podman import``);
- :class:`PodmanService` runs ``podman system service`` on a private socket with the settings this
  kernel needs (runtime ``runc``; explicit ``nofile``/``nproc`` ulimits) and stops it afterwards;
- :class:`ComposeProject` runs ``docker-compose`` against it under a project name of its own, runs
  the containers' healthchecks (podman runs them only through systemd timers, which a test machine
  may not have), and always takes the project down again, containers, networks and volumes.

Nothing here talks to anything but the local engine; the registries are reached by the image
builds (apt, pip, npm) only.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBIAN_IMAGE = "debian:bookworm-slim"
NEEDED = ("podman", "runc", "docker-compose", "debootstrap")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


class EngineError(RuntimeError):
    """The engine or compose failed; the message carries the command's output."""


def missing_tools() -> list[str]:
    return [tool for tool in NEEDED if not (shutil.which(tool) or Path("/usr/sbin", tool).exists())]


def _run(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None, **kw: object) -> str:
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            **kw,  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{' '.join(argv)}: no result after {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise EngineError(
            f"{' '.join(argv)} exited with {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return str(result.stdout)


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], capture_output=True).returncode == 0


SOURCES = """\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""

# what the official slim image leaves out (its dpkg path excludes)
SLIM_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""


def ensure_debian_base(workdir: Path, mirror: str = "http://deb.debian.org/debian") -> None:
    """Make ``debian:bookworm-slim`` available without a container registry: Debian's own
    ``debootstrap --variant=minbase``, trimmed like the official slim image, imported into podman."""
    if image_exists(DEBIAN_IMAGE):
        return
    rootfs = workdir / "bookworm-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror], timeout=900)
    (rootfs / "etc/apt/sources.list").write_text(SOURCES)
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_EXCLUDES)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        for child in (rootfs / junk).glob("*"):
            if child.is_file():
                child.unlink()
            elif child.is_dir() and child.name != "partial":
                shutil.rmtree(child, ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        _run(
            ["podman", "import", "--change", "CMD=/bin/bash", "-", DEBIAN_IMAGE],
            timeout=600,
            stdin=tar.stdout,
        )
    finally:
        tar.wait(60)
        shutil.rmtree(rootfs, ignore_errors=True)
    # the name Docker's short-name resolution gives, so FROM finds it without a registry
    _run(["podman", "tag", f"localhost/{DEBIAN_IMAGE}", f"docker.io/library/{DEBIAN_IMAGE}"], timeout=60)


def trust_host_ca_in_builds() -> Path | None:
    """Copy the host's CA bundle to ``config/build-ca/`` (git-ignored) so that image builds reach
    the registries through this machine's TLS-inspecting egress; returns the copy to remove later."""
    if not HOST_CA.is_file():
        return None
    target = REPO / "config" / "build-ca" / "host-ca-bundle.crt"
    shutil.copyfile(HOST_CA, target)
    return target


def containers_conf() -> str:
    """podman's settings for this machine: ``runc``, and explicit ulimits: podman's defaults
    (this process's own limits) are refused by runc here ("error setting rlimit ... operation not
    permitted"); ``nofile`` as this process has it and a modest ``nproc`` are accepted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (soft, hard):
        soft = hard = 65536
    limits = [f"nofile={soft}:{hard}", "nproc=4096:4096"]
    return CONTAINERS_CONF.replace("@ULIMITS@", ", ".join(f'"{x}"' for x in limits))


CONTAINERS_CONF = """\
[containers]
default_ulimits = [@ULIMITS@]
log_driver = "k8s-file"

[engine]
runtime = "runc"
events_logger = "file"
cgroup_manager = "cgroupfs"
"""


class PodmanService:
    """``podman system service`` on a socket of its own (the Docker API for docker-compose)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "podman.sock"
        self.conf = workdir / "containers.conf"
        self.log_path = workdir / "podman-service.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(self.conf)}

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 60) -> PodmanService:
        self.conf.write_text(containers_conf())
        self.socket.unlink(missing_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", self.docker_host],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EngineError("podman system service did not start:\n" + self.log_path.read_text())
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        self.socket.unlink(missing_ok=True)


class ComposeProject:
    """``docker-compose -p NAME`` in a project directory, against :class:`PodmanService`."""

    def __init__(
        self, engine: PodmanService, project_dir: Path, name: str, files: Sequence[str] = ()
    ) -> None:
        self.engine = engine
        self.dir = project_dir
        self.name = name
        self.files = list(files)
        self._checker: threading.Thread | None = None
        self._stop_checks = threading.Event()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.engine.env,
            "DOCKER_HOST": self.engine.docker_host,
            "COMPOSE_PROJECT_NAME": self.name,
            # images of this run under a tag of their own (their layers stay in the build cache)
            "PARLEY_IMAGE_TAG": self.name,
            "COMPOSE_HTTP_TIMEOUT": "600",
            "DOCKER_BUILDKIT": "0",
        }

    def compose(self, *args: str, timeout: float = 300) -> str:
        argv = ["docker-compose"]
        for f in self.files:
            argv += ["-f", f]
        return _run([*argv, *args], timeout=timeout, env=self.env(), cwd=self.dir)

    def podman(self, *args: str, timeout: float = 60) -> str:
        return _run(["podman", *args], timeout=timeout, env={**os.environ, **self.engine.env})

    # --- containers ------------------------------------------------------------------------------

    def containers(self, service: str | None = None, running_only: bool = True) -> list[dict[str, object]]:
        """The project's containers (``podman ps`` JSON), optionally of one service."""
        args = ["ps", "--format", "json", "--filter", f"label=com.docker.compose.project={self.name}"]
        if not running_only:
            args.append("--all")
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        return list(json.loads(self.podman(*args) or "[]"))

    def container_names(self, service: str | None = None) -> list[str]:
        return sorted(str(c["Names"][0]) for c in self.containers(service))  # type: ignore[index]

    def health(self, container: str) -> str:
        out = self.podman("inspect", "--format", "{{.State.Health.Status}}", container)
        return out.strip()

    def run_healthcheck(self, container: str, timeout: float = 90) -> bool:
        """One run of the container's own healthcheck (which also updates its health status)."""
        try:
            result = subprocess.run(
                ["podman", "healthcheck", "run", container],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **self.engine.env},
            )
        except subprocess.TimeoutExpired:  # a very loaded machine: unhealthy for now, try again later
            return False
        return result.returncode == 0

    def start_healthchecks(self, interval: float = 2.0) -> None:
        """Run every container's healthcheck periodically (what Docker's daemon does on its own)."""
        if self._checker is not None:
            return
        self._stop_checks.clear()

        def loop() -> None:
            while not self._stop_checks.wait(interval):
                with contextlib.suppress(Exception):
                    for name in self.container_names():
                        if self._stop_checks.is_set():
                            return
                        with contextlib.suppress(Exception):
                            self.run_healthcheck(name)

        self._checker = threading.Thread(target=loop, name=f"healthchecks-{self.name}", daemon=True)
        self._checker.start()

    def stop_healthchecks(self) -> None:
        self._stop_checks.set()
        if self._checker is not None:
            self._checker.join(40)
            self._checker = None

    def wait_healthy(
        self, services: Sequence[str], timeout: float = 240, count: dict[str, int] | None = None
    ) -> None:
        """Wait until every container of ``services`` (``count[service]`` of them) is healthy."""
        count = count or {}
        deadline = time.monotonic() + timeout
        while True:
            pending = []
            for service in services:
                names = self.container_names(service)
                if len(names) < count.get(service, 1):
                    pending.append(f"{service}: {len(names)} running")
                for name in names:
                    if not self.run_healthcheck(name):
                        pending.append(f"{name}: {self.health(name) or 'no status'}")
            if not pending:
                return
            if time.monotonic() > deadline:
                raise EngineError(f"not healthy after {timeout:.0f}s: {pending}\n{self.logs()}")
            time.sleep(2)

    def logs(self, tail: int = 60) -> str:
        with contextlib.suppress(EngineError):
            return self.compose("logs", "--no-color", f"--tail={tail}", timeout=60)
        return "(no logs)"

    def leftovers(self) -> list[str]:
        """Containers, networks and volumes of this project still present."""
        label = f"label=com.docker.compose.project={self.name}"
        out = []
        for kind in ("ps --all", "network ls", "volume ls"):
            args = [*kind.split(), "--quiet", "--filter", label]
            out += [f"{kind.split()[0]} {x}" for x in self.podman(*args).split()]
        return out

    def down(self) -> None:
        """Take the project down (containers, networks, volumes); force-remove whatever remains."""
        self.stop_healthchecks()
        with contextlib.suppress(EngineError):
            self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300)
        label = f"label=com.docker.compose.project={self.name}"
        with contextlib.suppress(EngineError):
            ids = self.podman("ps", "--all", "--quiet", "--filter", label).split()
            if ids:
                self.podman("rm", "--force", "--time", "5", *ids, timeout=120)
        with contextlib.suppress(EngineError):
            for vol in self.podman("volume", "ls", "--quiet", "--filter", label).split():
                self.podman("volume", "rm", "--force", vol)

    def remove_images(self) -> None:
        """Untag this run's images (``parley/<service>:<project>``); the build cache keeps the layers."""
        out = self.podman(
            "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=*/parley/*"
        )
        tags = [t for t in out.split() if t.endswith(f":{self.name}")]
        if tags:
            with contextlib.suppress(EngineError):
                self.podman("rmi", *tags, timeout=120)


@contextlib.contextmanager
def podman_service() -> Iterator[PodmanService]:
    workdir = Path(tempfile.mkdtemp(prefix="parley-podman-"))
    engine = PodmanService(workdir).start()
    try:
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(workdir, ignore_errors=True)

"""Network namespaces for integration tests, two ways.

- :func:`multi_homed`: the test process itself in a private network namespace with loopback plus a
  second address on a veth (``with multi_homed(): ...``), so the stack and Chromium started inside
  see a host with two interfaces and ICE has a real choice between candidate pairs
  (``test_jitsi_client.py``). It moves the calling thread (pytest's) into a fresh namespace
  (``unshare(CLONE_NEWNET)``) and back (``setns``) when the block ends; the private namespace goes
  away with the last process in it. :func:`available` says whether it can work (root, iproute2).
- :class:`NetLab`: network "sites" (``test_nat_*.py``): named namespaces joined to the test's own
  namespace with veth pairs, nftables firewalls, a masquerading NAT router, and Chromium started
  inside a site. Everything a :class:`NetLab` creates is named after it (``pn<pid>…``), lives only
  in namespaces it created (plus the root-side ends of their veth pairs, which vanish with them),
  and is removed by :meth:`NetLab.close`, which also runs when the test fails.
  :func:`netns_available` says whether it can work (root, iproute2, nftables).

Both need root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page

from tests.integration.browser import CHROMIUM, CHROMIUM_FLAGS, DESKTOP, Browsers

CLONE_NEWNET = 0x40000000
SECOND_ADDRESS = "10.99.0.1"  # NetLab's sites use 10.100.0.0-10.199.255.255: never this one

_libc = ctypes.CDLL(None, use_errno=True)


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@contextlib.contextmanager
def multi_homed(second: str = SECOND_ADDRESS, default_route: bool = False) -> Iterator[str]:
    """Run the block in a private network namespace with 127.0.0.1 and ``second``; yields ``second``.
    ``default_route``: a default route out of the veth, where every packet to an address outside
    the namespace is refused at once (nftables ``reject``: a DNS lookup fails fast instead of
    timing out): Firefox gathers no ICE candidate at all on a host without a default route."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"unshare(CLONE_NEWNET): {os.strerror(errno)}")
        try:
            for command in (
                "ip link set lo up",
                "ip link add pv0 type veth peer name pv1",
                f"ip addr add {second}/24 dev pv0",
                "ip link set pv0 up",
                "ip link set pv1 up",
                *([f"ip route add default via {second.rsplit('.', 1)[0]}.254 dev pv0"] if default_route else []),
            ):
                subprocess.run(command.split(), check=True, capture_output=True)
            if default_route:
                ruleset = f"""table inet parley_outside {{
                  chain output {{ type filter hook output priority filter; policy accept;
                    oifname "lo" accept
                    ip daddr {second} accept
                    reject
                  }}
                }}"""
                subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True, capture_output=True)
            yield second
        finally:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns back to the original network namespace: {os.strerror(errno)}")
    finally:
        os.close(original)


def netns_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        return False
    probe = f"pnprobe{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


@dataclass(frozen=True)
class Site:
    """A namespace with one address; ``gateway`` is the root-side (or router-side) address."""

    ns: str
    ip: str
    gateway: str


class NetLab:
    def __init__(self) -> None:
        pid = os.getpid()
        self.tag = f"pn{pid % 100000}"
        self.net = 100 + pid % 100  # 10.<net>.<site>.0/24: unlikely to meet another test's
        self.namespaces: list[str] = []
        self._sites = 0
        self.tmp = Path(tempfile.mkdtemp(prefix=f"parley-{self.tag}-"))

    # -- plumbing ---------------------------------------------------------------------------
    @staticmethod
    def sh(*argv: str, ns: str | None = None, stdin: str | None = None) -> str:
        cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
        return result.stdout

    def namespace(self, name: str) -> str:
        ns = f"{self.tag}{name}"
        self.sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        self.sh("ip", "link", "set", "lo", "up", ns=ns)
        return ns

    def _veth(self, a_ns: str | None, a_ip: str, b_ns: str, b_ip: str, name: str) -> None:
        a, b = f"{self.tag}{name}a", f"{self.tag}{name}b"
        self.sh("ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns)
        if a_ns is not None:
            self.sh("ip", "link", "set", a, "netns", a_ns)
        self.sh("ip", "addr", "add", f"{a_ip}/24", "dev", a, ns=a_ns)
        self.sh("ip", "link", "set", a, "up", ns=a_ns)
        self.sh("ip", "addr", "add", f"{b_ip}/24", "dev", b, ns=b_ns)
        self.sh("ip", "link", "set", b, "up", ns=b_ns)

    def _next_subnet(self) -> str:
        self._sites += 1
        return f"10.{self.net}.{self._sites}"

    # -- sites ------------------------------------------------------------------------------
    def site(self, name: str) -> Site:
        """A namespace wired straight to this one: ``gateway`` is an address of this namespace."""
        ns = self.namespace(name)
        net = self._next_subnet()
        self._veth(None, f"{net}.1", ns, f"{net}.2", name)
        self.sh("ip", "route", "add", "default", "via", f"{net}.1", ns=ns)
        return Site(ns, f"{net}.2", f"{net}.1")

    def nat_site(self, name: str) -> tuple[Site, Site]:
        """A home network: a router namespace masquerading (nftables) for a site behind it on
        192.168.<n>.0/24. Returns (router, site); the router's ``ip`` is the NAT's public side."""
        router = self.site(f"{name}r")
        ns = self.namespace(name)
        lan = f"192.168.{self._sites}"
        self._veth(router.ns, f"{lan}.1", ns, f"{lan}.2", f"{name}l")
        self.sh("ip", "route", "add", "default", "via", f"{lan}.1", ns=ns)
        self.sh("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward", ns=router.ns)
        self.nft(
            router.ns,
            f"""
            table ip parley_nat {{
              chain postrouting {{
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr {lan}.0/24 oifname "{self.tag}{name}rb" counter masquerade
              }}
            }}""",
        )
        return router, Site(ns, f"{lan}.2", f"{lan}.1")

    def masqueraded(self, router: Site) -> int:
        """Connections (first packets) the NAT router masqueraded so far."""
        return self.counted(router, "ip", "parley_nat")

    def nft(self, ns: str, ruleset: str) -> None:
        self.sh("nft", "-f", "-", ns=ns, stdin=ruleset)

    def drop_udp(self, site: Site) -> None:
        """A firewall that lets only TCP out (and back in): no UDP at all, like many offices."""
        self.nft(
            site.ns,
            """
            table inet parley_fw {
              chain output { type filter hook output priority filter; policy accept;
                oifname "lo" accept
                meta l4proto udp counter drop
              }
              chain input { type filter hook input priority filter; policy accept;
                iifname "lo" accept
                meta l4proto udp counter drop
              }
            }""",
        )

    def udp_dropped(self, site: Site) -> int:
        """Packets the site's UDP firewall dropped so far (out and in)."""
        return self.counted(site, "inet", "parley_fw")

    def counted(self, site: Site, family: str, table: str) -> int:
        """Packets every ``counter`` of an nftables table in ``site`` counted so far."""
        out = self.sh("nft", "list", "table", family, table, ns=site.ns)
        return sum(int(w.split()[0]) for w in out.split("counter packets")[1:])

    # -- Chromium in a site -----------------------------------------------------------------
    def open_browser(self, pool: Browsers, site: Site | None, secure_origin: str) -> Page:
        """Chromium (Playwright-driven) whose network is ``site``'s (None: this namespace)."""
        executable = CHROMIUM
        if site is not None:
            wrapper = self.tmp / f"chromium-{site.ns}"
            wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {site.ns} {CHROMIUM} "$@"\n')
            wrapper.chmod(0o755)
            executable = str(wrapper)
        profile = Path(tempfile.mkdtemp(prefix="parley-chromium-"))
        pool.profiles.append(profile)
        context = pool.playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            # the page is plain http on a non-loopback address: let it use the camera anyway
            args=[*CHROMIUM_FLAGS, f"--unsafely-treat-insecure-origin-as-secure={secure_origin}"],
            viewport=DESKTOP,
            ignore_default_args=["--mute-audio"],
        )
        pool.contexts.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        return page

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            # the tables go with the namespace; deleting it also removes both ends of its veths
            with contextlib.suppress(RuntimeError):
                self.sh("ip", "netns", "del", ns)
        self.namespaces.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

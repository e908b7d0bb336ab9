"""One WebSocket client sequence against Kamailio's websocket module (the reference) and Parley's
WebSocket servers (the broker's /xmpp-websocket, the bridge's /colibri-ws): ws.dump in each
order, ws.ping, ws.pong, ws.close, ws.disable/ws.enable, the closed event and every keep-alive
mode. Kamailio is driven with ``kamcmd``, Parley with ``./parley ws`` (``python -m services.ops``)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from tests.integration.harness import PYTHON, REPO, ServiceProcess, free_port, free_tcp_udp_port
from tests.integration.kamailio import Kamailio, require_kamailio
from tests.integration.test_bridge_control_support import dumps
from tests.integration.xmpp_interop.servers import parley_env

START_TIMEOUT = 120.0  # the shared test machine may be loaded
LINE = re.compile(
    r"^(\d+): ws:127\.0\.0\.1:(\d+) -> ws:127\.0\.0\.1:(\d+) \(state: (OPEN|CLOSING), (awaiting Pong, )? "
    r"last used (\d+)s ago, sub-protocol: (sip|xmpp|\*\*UNKNOWN\*\*)\)$"
)
OBSERVED: dict[str, dict[str, Any]] = {}
"""What each server did in the shared sequence; the last test compares them."""


class RecordingClient(ClientConnection):
    """A WebSocket client that notes the Ping and Pong frames the server sends it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.control: list[tuple[str, bytes]] = []

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode in (Opcode.PING, Opcode.PONG):
            self.control.append((event.opcode.name, bytes(event.data)))

    @property
    def port(self) -> int:
        return int(self.local_address[1])


class Server:
    """A WebSocket server under test: how to connect, and its admin commands."""

    name = ""
    subprotocols: list[str] | None = None

    async def url(self) -> str:
        raise NotImplementedError

    async def connect(self) -> RecordingClient:
        client = await connect(
            await self.url(),
            subprotocols=self.subprotocols,  # type: ignore[arg-type]
            create_connection=RecordingClient,
            ping_interval=None,
            compression=None,
            open_timeout=20,
        )
        assert isinstance(client, RecordingClient)
        return client

    def command(self, *args: str) -> tuple[bool, Any]:
        """(succeeded, answer) of one ws.* command."""
        raise NotImplementedError

    def dump(self, order: str | None = None) -> dict[str, Any]:
        ok, answer = self.command("dump", *([order] if order else []))
        assert ok, answer
        return answer  # type: ignore[no-any-return]

    def log(self) -> str:
        raise NotImplementedError


class KamailioServer(Server):
    name = "kamailio"
    subprotocols = ["sip"]

    def __init__(self, kamailio: Kamailio) -> None:
        self.k = kamailio

    async def url(self) -> str:
        return self.k.url

    def command(self, *args: str) -> tuple[bool, Any]:
        if args[0] == "dump":
            answer = self.k.dump(*args[1:])
            return "error" not in answer, answer
        out = self.k.kamcmd(f"ws.{args[0]}", *args[1:])
        return not out.startswith("error"), out

    def log(self) -> str:
        return self.k.process.log(tail=500)


class ParleyServer(Server):
    """A Parley service, administered through the CLI with a stack description in a run dir."""

    def __init__(self, name: str, kind: str, api: str, process: ServiceProcess) -> None:
        self.name, self.kind, self.api, self.process = name, kind, api, process
        self.run_dir = Path(tempfile.mkdtemp(prefix="parley-ops-"))
        (self.run_dir / "stack.json").write_text(
            json.dumps({"front": "", "services": [{"name": name, "kind": kind, "api": api}]})
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "services.ops", "--run-dir", str(self.run_dir), "ws", *args],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip

    def command(self, *args: str) -> tuple[bool, Any]:
        argv = list(args)
        if argv[0] == "dump" and len(argv) > 1:
            argv = ["dump", "--order", argv[1]]
        out = self.cli(*argv, "--json")
        if out.returncode != 0:
            return False, out.stderr
        answer = json.loads(out.stdout)
        return True, answer.get(self.name, answer)

    def log(self) -> str:
        return self.process.log(tail=2000)


class BrokerServer(ParleyServer):
    subprotocols = ["xmpp"]

    def __init__(self, **env: str) -> None:
        # the clients here never log in: the login deadline must outlast a slow run
        conf = Path(tempfile.mkstemp(prefix="parley-xmpp-", suffix=".conf")[1])
        conf.write_text("xmpp.limits.auth-timeout = 600\n")
        c2s, http = free_port(), free_port()
        environment = parley_env(c2s, http, XMPP_CONFIG=str(conf), XMPP_WS_RM_DELAY_INTERVAL="1", **env)
        proc = ServiceProcess.python_module(
            "xmpp-wsadmin", "services.xmpp", environment, health_url=f"http://127.0.0.1:{http}/health"
        )
        proc.start(timeout=START_TIMEOUT)
        self.ws_url = f"ws://127.0.0.1:{http}/xmpp-websocket"
        super().__init__("xmpp", "xmpp", f"http://127.0.0.1:{http}", proc)

    async def url(self) -> str:
        return self.ws_url


class BridgeServer(ParleyServer):
    def __init__(self, **env: str) -> None:
        private, public, udp = free_port(), free_port(), free_tcp_udp_port()
        environment = {
            "JVB_COLIBRI_PORT": str(private),
            "JVB_PUBLIC_PORT": str(public),
            "JVB_PORT": str(udp),
            "JVB_ADVERTISE_IPS": "127.0.0.1",
            "JVB_WS_SERVER_ID": "jvbadm",
            "JVB_WS_DOMAIN": f"127.0.0.1:{public}",
            "JVB_WS_TLS": "false",
            "JVB_WS_RM_DELAY_INTERVAL": "1",
            **env,
        }
        proc = ServiceProcess.python_module(
            "bridge-wsadmin",
            "services.bridge",
            environment,
            health_url=f"http://127.0.0.1:{private}/about/health",
        )
        proc.start(timeout=START_TIMEOUT)
        self.colibri = f"http://127.0.0.1:{private}"
        super().__init__("jvbadm", "bridge", self.colibri, proc)
        self.free: list[str] = []

    async def url(self) -> str:
        """Each connection is one endpoint's bridge channel: a fresh conference of endpoints when needed."""
        if not self.free:
            names = [f"e{i}" for i in range(8)]
            body = {
                "contents": [{"name": "audio", "channels": [{"endpoint": e, "expire": 120} for e in names]}],
                "channel-bundles": [{"id": e, "transport": {"rtcp-mux": True}} for e in names],
            }
            async with httpx.AsyncClient(timeout=20) as http:
                r = await http.post(f"{self.colibri}/colibri/conferences", content=dumps(body))
            assert r.status_code == 200, r.text
            self.free = [b["transport"]["web-socket"] for b in r.json()["channel-bundles"]]
        return self.free.pop(0)


async def eventually(check: Callable[[], Any], within: float = 20.0, what: str = "") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.2)


async def until_closed(client: ClientConnection) -> None:
    """Read (and ignore) messages until the server's Close arrives."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(client.recv(), 15)


def by_port(dump: dict[str, Any]) -> dict[int, re.Match[str]]:
    out = {}
    for line in dump["connections"]:
        m = LINE.match(line)
        assert m, f"not a ws.dump line: {line!r}"
        out[int(m.group(2))] = m
    return out


@pytest.fixture(params=["kamailio", "xmpp", "bridge"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    if request.param == "kamailio":
        require_kamailio()
        with Kamailio() as k:
            yield KamailioServer(k)
        return
    s: ParleyServer = BrokerServer() if request.param == "xmpp" else BridgeServer()
    try:
        yield s
    finally:
        s.process.stop()


async def test_the_same_sequence_on_every_server(server: Server) -> None:
    seen: dict[str, Any] = {}
    a = await server.connect()
    await asyncio.sleep(1.2)
    b = await server.connect()
    await asyncio.sleep(1.2)
    c = await server.connect()
    await asyncio.sleep(1.2)
    await asyncio.wait_for(await a.ping(b"used"), 10)  # a frame from a: it is the most recently used
    names = {a.port: "a", b.port: "b", c.port: "c"}

    def order(name: str | None) -> list[str]:
        lines = by_port(server.dump(name))
        return [names[p] for p in lines if p in names]

    seen["id_hash"], seen["used_desc"], seen["used_asc"] = order(None), order("used_desc"), order("used_asc")
    dump = server.dump()
    lines = by_port(dump)
    seen["states"] = sorted(lines[p].group(4) for p in names)
    seen["idle_b_at_least_2s"] = int(lines[b.port].group(6)) >= 2
    seen["info_fields"] = {"wscounter", "truncated"} <= set(dump["info"]) and dump["info"][
        "truncated"
    ] == "no"
    seen["wscounter_counts_lines"] = dump["info"]["wscounter"] == len(dump["connections"])
    ids = {name: lines[p].group(1) for p, name in names.items()}

    # ws.ping: b receives a Ping (its library answers, which clears "awaiting Pong")
    assert server.command("ping", ids["b"])[0]
    await eventually(lambda: any(kind == "PING" for kind, _ in b.control), what="a Ping on b")
    await eventually(lambda: not by_port(server.dump())[b.port].group(5), what="b's Pong noted")
    # ws.pong: c receives an unsolicited Pong
    assert server.command("pong", ids["c"])[0]
    await eventually(lambda: any(kind == "PONG" for kind, _ in c.control), what="a Pong on c")
    seen["ping_and_pong_sent"] = True
    # ws.close: a gets 1000 "Normal closure" and leaves the dump
    assert server.command("close", ids["a"])[0]
    await until_closed(a)  # (the broker sends the stream's <close/> first, RFC 7395)
    seen["close"] = (a.close_code, a.close_reason)
    await eventually(lambda: a.port not in by_port(server.dump()), what="a gone from ws.dump")
    # the closed event, with the connection's id, in the log
    await eventually(
        lambda: re.search(rf"WebSocket connection (with id )?{ids['a']} .*has closed", server.log()),
        what="the closed event in the log",
    )
    seen["closed_event"] = True
    # errors: an unknown id, an unknown order
    seen["close_unknown"] = server.command("close", "999999")[0]
    seen["bad_order"] = server.command("dump", "newest")[0]
    # ws.disable refuses new connections with 503, open ones stay; ws.enable accepts again
    assert server.command("disable")[0]
    with pytest.raises(InvalidStatus) as refused:
        await server.connect()
    seen["disabled_status"] = refused.value.response.status_code
    await b.ping()
    assert server.command("enable")[0]
    d = await server.connect()
    seen["enabled_again"] = d.port in by_port(server.dump())
    for client in (b, c, d):
        await client.close()
    OBSERVED[server.name] = seen
    assert seen["id_hash"] == ["a", "b", "c"]
    assert seen["used_desc"] == ["b", "c", "a"]  # least recently used first
    assert seen["used_asc"] == ["a", "c", "b"]  # most recently used first
    assert seen["close"] == (1000, "Normal closure") and seen["disabled_status"] == 503


def test_parley_behaves_as_kamailio() -> None:
    """Fields, orders, close codes, errors: the same observations on every server."""
    if "kamailio" not in OBSERVED:
        pytest.skip("the Kamailio run did not complete")
    reference = OBSERVED["kamailio"]
    for name, seen in OBSERVED.items():
        assert seen == reference, (name, seen, reference)
    assert set(OBSERVED) == {"kamailio", "xmpp", "jvbadm"}


@pytest.mark.parametrize("kind", ["xmpp", "bridge"])
async def test_parley_close_with_status_and_reason(kind: str) -> None:
    """``parley ws close ID STATUS REASON`` (Kamailio's ws_close(status, reason)); bad values refused."""
    server: ParleyServer = BrokerServer() if kind == "xmpp" else BridgeServer()
    try:
        client = await server.connect()
        conn_id = by_port(server.dump())[client.port].group(1)
        assert not server.command("close", conn_id, "1005", "reserved")[0]
        out = server.cli("close", conn_id, "4000", "Because", "I", "say", "so")
        assert out.returncode == 0 and "4000" in out.stdout, out.stderr
        await until_closed(client)
        assert (client.close_code, client.close_reason) == (4000, "Because I say so")
        text = server.cli("dump").stdout  # the text form is kamcmd's layout
        assert "\tinfo: {" in text and "wscounter:" in text
        closed = re.compile(r'parley_ws_closed_total\{closed_by="local",server="\w+"\} 1\.0')
        await eventually(
            lambda: closed.search(httpx.get(f"{server.api}/metrics", timeout=10).text),
            what="the closed metric",
        )
    finally:
        server.process.stop()


def start(kind: str, mechanism: int) -> Any:
    if kind == "kamailio":
        return Kamailio(keepalive_mechanism=mechanism, keepalive_timeout=2, keepalive_interval=2)
    # a Ping must be answered before the next keep-alive run: 2 s apart, as a loaded test machine
    # may take more than 1 s to run the client that answers
    env = {"KEEPALIVE_MECHANISM": str(mechanism), "KEEPALIVE_TIMEOUT": "2", "KEEPALIVE_INTERVAL": "2"}
    if kind == "xmpp":
        return BrokerServer(**{f"XMPP_WS_{k}": v for k, v in env.items()})
    return BridgeServer(**{f"JVB_WS_{k}": v for k, v in env.items()})


@pytest.mark.parametrize("mechanism", [0, 1, 2])
@pytest.mark.parametrize("kind", ["kamailio", "xmpp", "bridge"])
async def test_keepalive_modes(kind: str, mechanism: int) -> None:
    """keepalive_timeout 2 s: 0 sends nothing, 1 Pings (and drops a client that cannot answer),
    2 sends unsolicited Pongs; a client that answers stays in every mode."""
    handle = start(kind, mechanism)
    if kind == "kamailio":
        handle.__enter__()
        server: Server = KamailioServer(handle)
    else:
        server = handle
    try:
        client = await server.connect()
        mute = await server.connect()
        mute.transport.pause_reading()  # reads nothing, so it answers no Ping
        await asyncio.sleep(7)
        kinds = {kind for kind, _ in client.control}
        # the dump runs in a thread: the client must go on answering Pings meanwhile (the CLI
        # takes seconds to start on a loaded machine)
        lines = by_port(await asyncio.to_thread(server.dump))
        assert client.port in lines
        if mechanism == 0:
            assert kinds == set() and mute.port in lines
        elif mechanism == 1:
            assert kinds == {"PING"}
            for _ in range(20):
                if mute.port not in by_port(await asyncio.to_thread(server.dump)):
                    break
                await asyncio.sleep(1)
            else:
                pytest.fail("the client that answers no Ping was not dropped")
        else:
            assert kinds == {"PONG"} and mute.port in lines  # a Pong expects no answer
        mute.transport.resume_reading()
        await client.close()
    finally:
        if kind == "kamailio":
            handle.__exit__(None, None, None)
        else:
            handle.process.stop()


JSSIP = Path(__file__).with_name("jssip")


async def test_jssip_registers_over_kamailios_websocket() -> None:
    """JsSIP (npm), a browser SIP stack run in node, registers through Kamailio's WebSocket
    (RFC 7118): ``ws.dump`` lists its connection with the sip sub-protocol, the registrar
    records the WebSocket connection it came from, and it unregisters."""
    require_kamailio()
    if not (JSSIP / "node_modules" / "jssip").is_dir():
        pytest.skip("npm packages of tests/integration/jssip are not installed (npm ci there)")
    with Kamailio() as k:
        node = await asyncio.create_subprocess_exec(
            "node", "register.mjs", k.url, "sip:alice@127.0.0.1", "secret", "8",
            cwd=JSSIP, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert node.stdout is not None
        line = (await asyncio.wait_for(node.stdout.readline(), 60)).decode()
        assert line.startswith("registered "), line
        assert ";transport=ws" in line and "received=" in line  # fix_nated_register(): the WS connection
        dump = KamailioServer(k).dump()
        assert any(line.endswith("sub-protocol: sip)") for line in dump["connections"]), dump
        rest = (await asyncio.wait_for(node.stdout.read(), 60)).decode()
        assert "unregistered" in rest and await node.wait() == 0

// Register with JsSIP over a SIP WebSocket server (RFC 7118), as a browser SIP client would:
//   node register.mjs ws://127.0.0.1:PORT/ sip:alice@127.0.0.1 [password] [hold-seconds]
// Prints "registered <contact>" once the registrar answers 200, holds the registration, then
// unregisters and prints "unregistered"; any failure prints "failed <cause>" and exits 1.
import WebSocket from "ws";
import JsSIP from "jssip";

globalThis.WebSocket = WebSocket; // JsSIP's WebSocketInterface uses the browser's constructor
const [url, uri, password = "secret", hold = "1"] = process.argv.slice(2);
const socket = new JsSIP.WebSocketInterface(url);
const ua = new JsSIP.UA({ sockets: [socket], uri, password, register: false, session_timers: false });
const fail = (cause) => { console.log(`failed ${cause}`); process.exit(1); };
const timer = setTimeout(() => fail("timeout"), 30000);
ua.on("registered", (e) => {
  console.log(`registered ${e.response.getHeader("Contact") || ""}`);
  setTimeout(() => ua.unregister(), Number(hold) * 1000);
});
ua.on("unregistered", () => { console.log("unregistered"); clearTimeout(timer); ua.stop(); setTimeout(() => process.exit(0), 200); });
ua.on("registrationFailed", (e) => fail(e.cause));
ua.on("disconnected", (e) => { if (e.error) fail("disconnected"); });
ua.on("connected", () => ua.register());
ua.start();

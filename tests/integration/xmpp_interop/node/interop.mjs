// A non-Python XMPP client for the interop tests: @xmpp/client logs in anonymously (TCP or
// WebSocket), joins a MUC room, sends a groupchat message and waits for a reply from the room.
// Usage: node interop.mjs <service-url> <domain> <room-jid> <nick>
// Prints one JSON line with what happened; exits 0 on success, 1 on failure.
import { client, xml } from "@xmpp/client";

const [service, domain, room, nick] = process.argv.slice(2);
const result = { service, jid: null, joined: false, selfCodes: [], reply: null };
const xmpp = client({ service, domain });
const timer = setTimeout(() => finish(1, "timeout"), 15000);

function finish(code, error) {
  clearTimeout(timer);
  if (error) result.error = String(error);
  console.log(JSON.stringify(result));
  xmpp.stop().catch(() => {}).finally(() => process.exit(code));
}

xmpp.on("error", (err) => finish(1, err));

xmpp.on("stanza", (stanza) => {
  if (stanza.is("presence") && stanza.attrs.from === `${room}/${nick}`) {
    const x = stanza.getChild("x", "http://jabber.org/protocol/muc#user");
    result.selfCodes = x ? x.getChildren("status").map((s) => s.attrs.code) : [];
    if (!result.joined && result.selfCodes.includes("110")) {
      result.joined = true;
      xmpp.send(xml("message", { to: room, type: "groupchat" }, xml("body", {}, `hello from ${nick}`)));
    }
  } else if (stanza.is("message") && stanza.attrs.type === "groupchat") {
    const body = stanza.getChildText("body");
    if (body && body.startsWith("reply to ")) {
      result.reply = { from: stanza.attrs.from, body };
      finish(0);
    }
  }
});

xmpp.on("online", async (address) => {
  result.jid = address.toString();
  await xmpp.send(xml("presence"));
  await xmpp.send(
    xml("presence", { to: `${room}/${nick}` }, xml("x", { xmlns: "http://jabber.org/protocol/muc" })),
  );
});

xmpp.start().catch((err) => finish(1, err));

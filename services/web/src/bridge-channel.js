// The Colibri bridge channel (docs/protocols.md#bridge-channel): JSON messages with a `colibriClass`, carried
// over the WebSocket the bridge advertises in the Jingle transport. Mirrors
// services/common/bridge_channel.py. The message functions are pure; BridgeChannel is the thin
// I/O part (one WebSocket, reconnecting with backoff 1, 2, 4 … 60 s).

export const ColibriClass = Object.freeze({
  SERVER_HELLO: 'ServerHello',
  CLIENT_HELLO: 'ClientHello',
  ENDPOINT_MESSAGE: 'EndpointMessage',
  ENDPOINT_STATS: 'EndpointStats',
  LAST_N_CHANGED: 'LastNChangedEvent',
  RECEIVER_VIDEO_CONSTRAINTS: 'ReceiverVideoConstraints',
  DOMINANT_SPEAKER: 'DominantSpeakerEndpointChangeEvent',
  ENDPOINT_CONNECTIVITY: 'EndpointConnectivityStatusChangeEvent',
  SOURCE_VIDEO_TYPE: 'SourceVideoTypeMessage',
  FORWARDED_SOURCES: 'ForwardedSources',
  SENDER_SOURCE_CONSTRAINTS: 'SenderSourceConstraints',
  CONNECTION_STATS: 'ConnectionStats',
  ERROR: 'Error', // the bridge refused our last message (field, reason)
});

export class BridgeMessageError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BridgeMessageError';
  }
}

/** Parse one text frame; throws BridgeMessageError for anything that is not a message. */
export function parseBridgeMessage(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    throw new BridgeMessageError(`not JSON: ${e.message}`);
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new BridgeMessageError('not a JSON object');
  if (typeof msg.colibriClass !== 'string' || !msg.colibriClass) throw new BridgeMessageError('no colibriClass');
  return msg;
}

/** An EndpointMessage; `to` is an endpoint id, or "" for everyone. */
export function endpointMessage(msgPayload, to = '') {
  return { colibriClass: ColibriClass.ENDPOINT_MESSAGE, to, msgPayload };
}

export function endpointStats(stats) {
  return { colibriClass: ColibriClass.ENDPOINT_STATS, ...stats };
}

export function clientHello() {
  return { colibriClass: ColibriClass.CLIENT_HELLO };
}

/** Chat rides in EndpointMessage payloads of this type. */
export const CHAT = 'parley-chat';

export function chatMessage(text, displayName) {
  return endpointMessage({ type: CHAT, text, displayName });
}

/** Longest chat text and display name a page shows (longer ones are cut; docs/security.md). */
export const MAX_CHAT_TEXT = 10000;
export const MAX_DISPLAY_NAME = 100;

/** A chat message from an EndpointMessage, or null when the payload is something else. */
export function chatFrom(msg) {
  const p = msg.msgPayload;
  if (msg.colibriClass !== ColibriClass.ENDPOINT_MESSAGE || !p || p.type !== CHAT) return null;
  if (typeof p.text !== 'string' || !p.text) return null;
  const displayName = typeof p.displayName === 'string' ? p.displayName.slice(0, MAX_DISPLAY_NAME) : '';
  return { from: String(msg.from ?? ''), text: p.text.slice(0, MAX_CHAT_TEXT), displayName };
}

/** Seconds to wait before reconnect attempt `attempt` (0-based): 1, 2, 4 … capped at 60. */
export function reconnectDelay(attempt) {
  return Math.min(60, 2 ** Math.max(0, attempt));
}

/**
 * One bridge-channel WebSocket that reconnects with backoff until closed.
 * Callbacks: onMessage(msg), onState('connecting'|'open'|'reconnecting'|'closed', detail).
 */
export class BridgeChannel {
  constructor(url, { onMessage = () => {}, onState = () => {}, WebSocketImpl = globalThis.WebSocket,
    delayScale = 1000, setTimer = setTimeout, clearTimer = clearTimeout } = {}) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.WebSocketImpl = WebSocketImpl;
    this.delayScale = delayScale;
    // called unbound: the browser's setTimeout refuses another `this`
    this.setTimer = (fn, ms) => setTimer(fn, ms);
    this.clearTimer = (id) => clearTimer(id);
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.closed = false;
    this.queue = [];
    this.dataChannel = null;
  }

  open() {
    this.closed = false;
    if (this.url) this.#connect(); // without a URL only a data channel can carry the messages
    return this;
  }

  get isOpen() {
    return this.#dataChannelOpen || (!!this.ws && this.ws.readyState === 1);
  }

  get #dataChannelOpen() {
    return !!this.dataChannel && this.dataChannel.readyState === 'open';
  }

  /** 'datachannel' while the bridge's SCTP data channel carries the messages, else 'websocket'. */
  get transport() {
    return this.#dataChannelOpen ? 'datachannel' : 'websocket';
  }

  /**
   * Carry the messages over the data channel the bridge opened (focus `enable-sctp`) while it is
   * open; the WebSocket stays as the fallback. The bridge answers on the data channel once we
   * have sent on it, so we greet it there.
   */
  useDataChannel(dc) {
    this.dataChannel = dc;
    const opened = () => {
      if (this.dataChannel !== dc || this.closed) return;
      dc.send(JSON.stringify(clientHello()));
      for (const text of this.queue.splice(0)) dc.send(text);
      this.onState('open', { transport: 'datachannel' });
    };
    dc.onmessage = (event) => this.#receive(event.data);
    dc.onclose = () => {
      if (this.dataChannel !== dc) return;
      this.dataChannel = null;
      if (!this.closed) this.onState(this.isOpen ? 'open' : 'reconnecting', { transport: 'websocket', reason: 'data channel closed' });
    };
    if (dc.readyState === 'open') opened();
    else dc.onopen = opened;
  }

  /** Send a message now, or when the channel (re)opens. */
  send(msg) {
    const text = JSON.stringify(msg);
    if (this.#dataChannelOpen) this.dataChannel.send(text);
    else if (this.ws && this.ws.readyState === 1) this.ws.send(text);
    else this.queue.push(text);
  }

  #receive(data) {
    let msg;
    try {
      msg = parseBridgeMessage(typeof data === 'string' ? data : String(data));
    } catch (e) {
      console.warn('bridge channel: dropped a frame:', e.message);
      return;
    }
    this.onMessage(msg);
  }

  close() {
    this.closed = true;
    if (this.timer) this.clearTimer(this.timer);
    this.timer = null;
    if (this.ws) {
      this.ws.onclose = null;
      try {
        this.ws.close(1000);
      } catch {
        // already closing
      }
    }
    this.ws = null;
    if (this.dataChannel) {
      this.dataChannel.onmessage = this.dataChannel.onclose = this.dataChannel.onopen = null;
      this.dataChannel = null;
    }
    this.onState('closed');
  }

  #connect() {
    this.onState(this.attempt === 0 ? 'connecting' : 'reconnecting', { attempt: this.attempt });
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (e) {
      this.#scheduleReconnect(e.message);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.onState('open', { transport: this.transport });
      ws.send(JSON.stringify(clientHello()));
      for (const text of this.queue.splice(0)) ws.send(text);
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onerror = () => {};
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.closed) this.#scheduleReconnect(`closed (${event.code})`);
    };
  }

  #scheduleReconnect(reason) {
    const delay = reconnectDelay(this.attempt);
    this.attempt += 1;
    this.onState('reconnecting', { attempt: this.attempt, delaySeconds: delay, reason });
    this.timer = this.setTimer(() => {
      this.timer = null;
      if (!this.closed) this.#connect();
    }, delay * this.delayScale);
  }
}

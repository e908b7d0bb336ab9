import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';

import { WebSocket, WebSocketServer } from 'ws';

import {
  BridgeChannel, BridgeMessageError, chatFrom, chatMessage, ColibriClass, endpointMessage, MAX_CHAT_TEXT,
  MAX_DISPLAY_NAME, parseBridgeMessage, reconnectDelay,
} from '../src/bridge-channel.js';

describe('bridge-channel messages', () => {
  it('builds an EndpointMessage to everyone', () => {
    assert.deepEqual(endpointMessage({ hi: 1 }), { colibriClass: 'EndpointMessage', to: '', msgPayload: { hi: 1 } });
  });

  it('parses messages and rejects what is not one', () => {
    const m = parseBridgeMessage('{"colibriClass":"DominantSpeakerEndpointChangeEvent","dominantSpeakerEndpoint":"ab"}');
    assert.equal(m.colibriClass, ColibriClass.DOMINANT_SPEAKER);
    assert.throws(() => parseBridgeMessage('nope'), BridgeMessageError);
    assert.throws(() => parseBridgeMessage('[1]'), /not a JSON object/);
    assert.throws(() => parseBridgeMessage('{"to":""}'), /no colibriClass/);
  });

  it('carries chat in EndpointMessage payloads', () => {
    const sent = chatMessage('hello', 'Ada');
    const received = { ...sent, from: 'a1b2c3d4' };
    assert.deepEqual(chatFrom(received), { from: 'a1b2c3d4', text: 'hello', displayName: 'Ada' });
    assert.equal(chatFrom(endpointMessage({ type: 'other' })), null);
    assert.equal(chatFrom({ ...sent, msgPayload: { type: 'parley-chat', text: '' } }), null);
    assert.equal(chatFrom({ colibriClass: 'EndpointStats' }), null);
  });

  it('cuts a hostile chat message to what a page shows', () => {
    const huge = { ...endpointMessage({ type: 'parley-chat', text: 'x'.repeat(60000), displayName: 'n'.repeat(5000) }), from: 'e1' };
    const chat = chatFrom(huge);
    assert.equal(chat.text.length, MAX_CHAT_TEXT);
    assert.equal(chat.displayName.length, MAX_DISPLAY_NAME);
    assert.equal(chatFrom({ ...huge, msgPayload: { type: 'parley-chat', text: 'hi', displayName: { toString: 1 } } }).displayName, '');
  });

  it('backs off 1, 2, 4 … 60 seconds', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 20].map(reconnectDelay), [1, 2, 4, 8, 16, 32, 60, 60, 60]);
  });
});

describe('BridgeChannel over a real WebSocket server', () => {
  it('says hello, delivers messages both ways, and reconnects with backoff after a drop', async () => {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(server, 'listening');
    const url = `ws://127.0.0.1:${server.address().port}/colibri-ws/jvb1/conf/ep?pwd=x`;
    const received = [];
    const states = [];
    const fromClient = [];
    server.on('connection', (sock) => {
      sock.on('message', (data) => fromClient.push(JSON.parse(String(data))));
      sock.send(JSON.stringify({ colibriClass: 'ServerHello' }));
    });
    const channel = new BridgeChannel(url, {
      WebSocketImpl: WebSocket,
      delayScale: 10, // 10 ms per "second" keeps the test short
      onMessage: (m) => received.push(m),
      onState: (s, d) => states.push([s, d?.delaySeconds]),
    });
    channel.send(chatMessage('queued before open', 'Ada'));
    channel.open();
    const until = async (cond) => {
      for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(cond());
    };
    await until(() => received.length === 1 && fromClient.length === 2);
    assert.equal(received[0].colibriClass, 'ServerHello');
    assert.deepEqual(fromClient.map((m) => m.colibriClass), ['ClientHello', 'EndpointMessage']);
    for (const sock of server.clients) sock.terminate();
    await until(() => received.length === 2);
    assert.deepEqual(states.map((s) => s[0]), ['connecting', 'open', 'reconnecting', 'reconnecting', 'open']);
    assert.equal(states[2][1], 1);
    channel.close();
    assert.equal(states.at(-1)[0], 'closed');
    server.close();
  });

  it('keeps retrying with growing delays while nothing listens', async () => {
    const delays = [];
    const channel = new BridgeChannel('ws://127.0.0.1:9/colibri-ws/x', {
      WebSocketImpl: WebSocket,
      delayScale: 1,
      onState: (s, d) => s === 'reconnecting' && d.delaySeconds && delays.push(d.delaySeconds),
    });
    channel.open();
    for (let i = 0; i < 200 && delays.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    channel.close();
    assert.deepEqual(delays.slice(0, 4), [1, 2, 4, 8]);
  });
});

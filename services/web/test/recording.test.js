import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { $iq, Strophe } from 'strophe.js';

import { parsePresence } from '../src/signalling/muc.js';
import { appendJibriRequest, parseJibriResult, parseRecordingStatus } from '../src/signalling/recording.js';
import { xml } from './fixtures.js';

describe('recording (Jibri protocol)', () => {
  it('builds start and stop requests for the focus in the room', () => {
    const start = $iq({ to: 'standup@muc.meet.jitsi/focus', type: 'set' });
    appendJibriRequest(start, { action: 'start', mode: 'stream', streamId: 'rtmp://live.example/app/key' });
    const text = Strophe.serialize(start.tree());
    assert.match(text, /<jibri action="start" recording_mode="stream" streamid="rtmp:\/\/live.example\/app\/key" xmlns="http:\/\/jitsi.org\/protocol\/jibri"\/>/);
    const stop = $iq({ to: 'standup@muc.meet.jitsi/focus', type: 'set' });
    appendJibriRequest(stop, { action: 'stop', sessionId: 's1' });
    assert.match(Strophe.serialize(stop.tree()), /action="stop" session_id="s1"/);
  });

  it('reads the focus answer', () => {
    const iq = xml("<iq xmlns='jabber:client' type='result'><jibri xmlns='http://jitsi.org/protocol/jibri' status='pending' session_id='ab12' recording_mode='file'/></iq>");
    assert.deepEqual(parseJibriResult(iq), { status: 'pending', sessionId: 'ab12', mode: 'file' });
  });

  it('reads the recording status from the focus presence, as joiners get it', () => {
    const el = xml(`<presence xmlns='jabber:client' from='standup@muc.meet.jitsi/focus'>
      <x xmlns='http://jabber.org/protocol/muc#user'><item jid='focus@auth.meet.jitsi/focus' role='moderator'/></x>
      <jibri-recording-status xmlns='http://jitsi.org/protocol/jibri' status='on' recording_mode='file' session_id='ab12' initiator='standup@muc.meet.jitsi/alice'/>
    </presence>`);
    assert.equal(parsePresence(el, { focusUser: 'focus@auth.meet.jitsi' }).isFocus, true);
    const status = parseRecordingStatus(el);
    assert.equal(status.on, true);
    assert.equal(status.sessionId, 'ab12');
    assert.equal(status.initiator, 'standup@muc.meet.jitsi/alice');
    const off = parseRecordingStatus(xml(`<presence xmlns='jabber:client'><jibri-recording-status xmlns='http://jitsi.org/protocol/jibri' status='off' recording_mode='stream' failure_reason='recorder left'/></presence>`));
    assert.equal(off.on, false);
    assert.equal(off.mode, 'stream');
    assert.equal(off.failureReason, 'recorder left');
    assert.equal(parseRecordingStatus(xml("<presence xmlns='jabber:client'/>")), null);
  });
});

"""Parley's recorder: Jibri's job (recording and live streaming) without a browser.

Jibri records by running a whole Chrome that joins the meeting and capturing its screen. Parley's
bridge already forwards every stream packet by packet, so the recorder takes them as they are:

* it registers in the brewery room ``jibribrewery@<internal-muc>`` with Jibri's
  ``<jibri-status/>`` presence (:mod:`services.common.jibri`) and is started and stopped by the
  focus with Jibri's ``<jibri action='start'|'stop'/>`` IQ (:mod:`services.focus.jibri`);
* it joins the conference as a hidden, receive-only endpoint of the bridge: the focus allocates it
  a Colibri endpoint without sources and last-N and invites it with Jingle; the recorder answers
  with aiortc (:mod:`.media`);
* it writes, per recording (:mod:`.recording`): one WebM per participant, Opus and VP8 remuxed
  without decoding (:mod:`.tracks`), and one composed output - a grid with names and the mixed
  audio, H.264/AAC - to ``composed.mkv`` or, in stream mode, over RTMP (:mod:`.composite`);
  timing and lip sync come from :mod:`.sync`, the grid from :mod:`.layout`;
* its HTTP API lists recordings and their files (``/recordings``), with ``/health`` and
  ``/metrics``.

Several recordings run at once in one process (``recorder.capacity``). Settings:
``reference.conf`` (root ``recorder``). Run ``python -m services.recorder [--config FILE]``.
"""

"""Parley's conference focus: Jicofo's role (docs/protocols.md: the join, the brewery, the offer).

It turns "a browser joined a room" into "media flows through a bridge" and keeps it flowing when a
bridge dies. Layout, core first:

* :mod:`.selector` - which bridge takes a new conference (pure, table-tested);
* :mod:`.bridges` - the bridges known from brewery presence and health checks (pure);
* :mod:`.conference` - a room's participants and their Jingle session state (pure, JSON-storable);
* :mod:`.offer` - Colibri request bodies and Jingle messages built from the shared wire formats;
* :mod:`.flows` - what each event (allocation, accept, sources, leave, bridge lost, ICE failed)
  sends, as pure functions returning an outbox;
* :mod:`.failover` - the failure policy: where to place a participant, and whether a failed
  allocation means another bridge, a move of the conference, or giving up (pure);
* adapters: :mod:`.xmpp` (slixmpp session: conference IQ, MUC rooms as owner, brewery, Jingle),
  :mod:`.colibri_client` (httpx), :mod:`.store` (memory or Redis), :mod:`.http_api` (FastAPI),
  :mod:`.focus` (the orchestrator: one lock per conference, performs the outboxes), :mod:`.app`.

Run ``python -m services.focus [--config FILE]``; settings in ``reference.conf`` (root ``jicofo``).

Bridge discovery: bridges join ``jvbbrewery@<internal-muc>`` with their server id as nick and
publish ``<stats xmlns='http://jitsi.org/protocol/colibri'>`` (:mod:`services.common.brewery`). The
focus finds a bridge's Colibri REST base URL in its ``colibri_url`` stat when the bridge publishes
one, else in ``jicofo.bridge.colibri-urls`` (``JICOFO_BRIDGE_COLIBRI_URLS="jvb1=http://...,..."``).
A bridge without a known URL is listed but never chosen.
"""

"""The one owner of each conference's forwarding policy (conference intelligence, ``media/lastn.py``).

The media engine asks :meth:`ConferencePolicies.create` for a conference's policy when the
conference gets its first endpoint (again); the Colibri service reaches it with :meth:`get` to
apply channel settings (``last-n``, ``rtp-level-relay-type``); :meth:`forget` closes it (mixer
thread and all) when the Colibri conference expires.
"""

from __future__ import annotations

from services.bridge.media.lastn import ConferenceIntelligencePolicy, intelligence_policy_factory
from services.bridge.media.policy import SendMessage


class ConferencePolicies:
    def __init__(self) -> None:
        self._policies: dict[str, ConferenceIntelligencePolicy] = {}

    def create(self, conference_id: str, send: SendMessage) -> ConferenceIntelligencePolicy:
        """A new policy for ``conference_id``, closing the one the engine had dropped (its last
        endpoint left) before the conference got endpoints again."""
        old = self._policies.get(conference_id)
        if old is not None:
            old.close()
        policy = self._policies[conference_id] = intelligence_policy_factory(conference_id, send)
        return policy

    def get(self, conference_id: str) -> ConferenceIntelligencePolicy | None:
        return self._policies.get(conference_id)

    def forget(self, conference_id: str) -> None:
        policy = self._policies.pop(conference_id, None)
        if policy is not None:
            policy.close()

    def __contains__(self, conference_id: object) -> bool:
        return conference_id in self._policies

    def __len__(self) -> int:
        return len(self._policies)

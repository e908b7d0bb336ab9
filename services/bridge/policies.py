"""The one owner of each conference's forwarding policy (conference intelligence, ``media/allocation/lastn.py``).

The media engine asks :meth:`ConferencePolicies.create` for a conference's policy when the
conference gets its first endpoint (again); the Colibri service reaches it with :meth:`get` to
apply channel settings (``last-n``, ``rtp-level-relay-type``); :meth:`forget` closes it when the
Colibri conference expires. Nothing else creates or closes a policy.

The registry also owns each conference's mixing clock: a policy starts no thread, it reports
through ``on_mixing`` when its first mixer channel appears (then a
:class:`~services.bridge.media.allocation.mixer.MixerThread` ticks its mixer every 20 ms and hands the output
back to the event loop, :meth:`ConferenceIntelligencePolicy.deliver_mix`) and when its last one
goes (the thread stops). Closing a policy stops its thread.
"""

from __future__ import annotations

import asyncio

from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy, intelligence_policy_factory
from services.bridge.media.allocation.mixer import MixerThread, MixMinusMixer
from services.bridge.media.forwarding.policy import RequestKeyframe, SendMessage


class ConferencePolicies:
    def __init__(self) -> None:
        self._policies: dict[str, ConferenceIntelligencePolicy] = {}
        self._mixer_threads: dict[str, MixerThread] = {}

    def create(
        self, conference_id: str, send: SendMessage, request_keyframe: RequestKeyframe
    ) -> ConferenceIntelligencePolicy:
        """A new policy for ``conference_id``, closing the one the engine had dropped (its last
        endpoint left) before the conference got endpoints again."""
        self._close(conference_id)
        policy = self._policies[conference_id] = intelligence_policy_factory(
            conference_id, send, request_keyframe, lambda mixer: self._mixing(conference_id, policy, mixer)
        )
        return policy

    def get(self, conference_id: str) -> ConferenceIntelligencePolicy | None:
        return self._policies.get(conference_id)

    def forget(self, conference_id: str) -> None:
        self._close(conference_id)

    def forget_all(self) -> None:
        """Close every policy (the bridge stops without its conferences expiring one by one)."""
        for conference_id in list(self._policies):
            self._close(conference_id)

    def _close(self, conference_id: str) -> None:
        self._policies.pop(conference_id, None)  # what it reports from now on is ignored (_mixing)
        self._stop_mixer(conference_id)

    def _mixing(
        self, conference_id: str, policy: ConferenceIntelligencePolicy, mixer: MixMinusMixer | None
    ) -> None:
        if self._policies.get(conference_id) is not policy:
            return
        if mixer is None:
            self._stop_mixer(conference_id)
            return
        if conference_id in self._mixer_threads:
            return
        loop = asyncio.get_running_loop()

        def deliver(out: list[tuple[str, bytes]]) -> None:  # on the mixer thread
            loop.call_soon_threadsafe(policy.deliver_mix, out)

        thread = self._mixer_threads[conference_id] = MixerThread(mixer, deliver)
        thread.start()

    def _stop_mixer(self, conference_id: str) -> None:
        thread = self._mixer_threads.pop(conference_id, None)
        if thread is not None:
            thread.stop()

    def __contains__(self, conference_id: object) -> bool:
        return conference_id in self._policies

    def __len__(self) -> int:
        return len(self._policies)

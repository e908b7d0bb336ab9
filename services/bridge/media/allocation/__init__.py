"""Conference intelligence: which receiver gets which source at which layer (receiver settings,
allocator, video policy, fan-out targets), dominant speaker, bandwidth estimates and probing,
media connectivity and the audio mixer, wired per conference by ``lastn.ConferenceIntelligencePolicy``."""

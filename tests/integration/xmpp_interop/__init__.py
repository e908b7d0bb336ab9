"""Interop helpers: start a Parley broker or Debian's Prosody as the peer, drive real clients."""

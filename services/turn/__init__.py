"""coturn as Parley's TURN/STUN service: a generated ``turnserver.conf`` and Debian's ``turnserver``.

``python -m services.turn`` renders the config from environment variables (``config.py``) and
execs ``/usr/bin/turnserver`` with it. See ``docs/nat.md``.
"""

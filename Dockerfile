# Every Parley image, from one base: Debian's bookworm-slim (as docker-jitsi-meet), Debian's
# Python 3.11 with the project's dependencies in a virtualenv, Debian's nginx and redis-server.
# docker-compose.yml builds one target per service (`build: {target: bridge}`); the shared stages
# are built once and reused from the layer cache by every target.
#
#   docker build --target bridge -t parley/bridge .
#
# Builds behind a TLS-inspecting proxy: put the proxy's CA bundle (PEM, *.crt) in config/build-ca/;
# only the build stages trust it, the images that run do not contain it.

ARG DEBIAN_IMAGE=debian:bookworm-slim

# --- runtime base: Python 3.11 from Debian -------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS os
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# --- build stage: the virtualenv and the bridge's C forwarding loop ------------------------------
FROM os AS venv
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY config/build-ca/ /usr/local/share/parley-build-ca/
RUN for f in /usr/local/share/parley-build-ca/*.crt; do \
      [ -f "$f" ] && cat "$f" >> /etc/ssl/certs/ca-certificates.crt; done; true
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml /src/pyproject.toml
# dependencies only (from pyproject.toml, the one list), so source changes keep this layer cached
RUN python3 -m venv /opt/parley \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /src/requirements.txt \
 && /opt/parley/bin/pip install -r /src/requirements.txt
WORKDIR /app
COPY services ./services
RUN /opt/parley/bin/python -m services.bridge.media.forwarding.native

# --- build stage: the web client (Debian's nodejs and npm) ---------------------------------------
FROM os AS client
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
COPY config/build-ca/ /usr/local/share/parley-build-ca/
RUN for f in /usr/local/share/parley-build-ca/*.crt; do \
      [ -f "$f" ] && cat "$f" >> /etc/ssl/certs/ca-certificates.crt; done; true
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
WORKDIR /build/services/web
COPY services/web/package.json services/web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY services/web/ ./
RUN node build.mjs

# --- the base of every Parley service: the virtualenv and the source -----------------------------
FROM os AS base
COPY --from=venv /opt/parley /opt/parley
ENV PATH=/opt/parley/bin:$PATH
WORKDIR /app
COPY services ./services
RUN useradd --system --home /app parley

FROM base AS xmpp
USER parley
CMD ["python", "-m", "services.xmpp"]

FROM base AS focus
USER parley
CMD ["python", "-m", "services.focus"]

FROM base AS bridge
COPY --from=venv /app/services/bridge/media/forwarding/native_fanout.so ./services/bridge/media/forwarding/
USER parley
CMD ["python", "-m", "services.bridge"]

# the recorder: PyAV's wheel (in the virtualenv) carries FFmpeg, nothing from apt is needed
FROM base AS recorder
RUN mkdir -p /recordings && chown parley /recordings
USER parley
CMD ["python", "-m", "services.recorder"]

# the SIP gateway: aiortc and PyAV from the virtualenv, nothing from apt
FROM base AS sip
USER parley
CMD ["python", "-m", "services.sip"]

FROM base AS web
COPY --from=client /build/services/web/dist ./services/web/dist
USER parley
CMD ["python", "-m", "services.web"]

# nginx: renders its config from nginx/parley.conf.template and, without a certificate, generates a
# self-signed one into its volume (services/launcher/nginx_compose.py), then runs nginx in front
FROM base AS nginx
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default
COPY nginx ./nginx
ENV NGINX_PREFIX=/var/lib/parley-nginx
CMD ["python", "-m", "services.launcher.nginx_compose", "--exec"]

# TURN/STUN: Debian's coturn with a config generated from the environment (services/turn)
FROM base AS turn
RUN apt-get update \
 && apt-get install -y --no-install-recommends coturn \
 && rm -rf /var/lib/apt/lists/*
USER parley
ENV TURN_RUN_DIR=/tmp/parley-turn
CMD ["python", "-m", "services.turn"]

FROM os AS redis
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
CMD ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"]

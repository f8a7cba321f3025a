# syntax=docker/dockerfile:1
# The server side: flower-superlink, flower-superexec (runs the ServerApp) and the admin API
# (`tmc admin serve`), one image; docker-compose.yml picks the command.
#   docker build -f deploy/server.Dockerfile -t tmc-federation/server:0.1.0 .
# CPU-only torch wheels by default (the server composes and evaluates; it trains nothing).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1 \
    HOME=/home/tmc \
    FLWR_HOME=/home/tmc/.flwr \
    TMC_CACHE_DIR=/var/cache/tmc

WORKDIR /opt/tmc
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml setup.py README.md ./
COPY common common
COPY client client
COPY server server
# Everything is installed at build time: the SuperLink runs with
# --disable-runtime-dependency-installation and the SuperExec never runs `uv sync`.
RUN pip install . && python -c "import flwr, server.admin.proto, server.federation.app"

# Any uid may run the image (compose sets `user:` to the owner of the mounted keys); the
# state folders are world-writable with the sticky bit, files inside stay private.
RUN useradd --uid 10001 --create-home --home-dir /home/tmc tmc \
    && mkdir -p /var/lib/tmc/registry /var/lib/tmc/superlink /var/cache/tmc /home/tmc/.flwr \
    && chmod 1777 /var/lib/tmc /var/lib/tmc/registry /var/lib/tmc/superlink /var/cache/tmc \
        /home/tmc /home/tmc/.flwr
USER 10001
WORKDIR /home/tmc
EXPOSE 8000 9440
CMD ["flower-superlink", "--help"]

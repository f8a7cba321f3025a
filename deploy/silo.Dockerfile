# syntax=docker/dockerfile:1
# A silo node: flower-supernode (via `tmc silo start`) and the ClientApp executor it spawns
# (flower-superexec, flwr-clientapp) in one image.
#   CPU:  docker build -f deploy/silo.Dockerfile -t tmc-federation/silo:0.1.0 .
#   CUDA: docker build -f deploy/silo.Dockerfile -t tmc-federation/silo-cuda:0.1.0 \
#           --build-arg TORCH_INDEX_URL=https://pypi.org/simple .
# (PyPI's Linux torch wheels are the CUDA build and bring their own CUDA runtime; the host
# needs the NVIDIA driver and the NVIDIA Container Toolkit: compose reserves the GPU.)
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
    TMC_CACHE_DIR=/var/cache/tmc \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /opt/tmc
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml setup.py README.md ./
COPY common common
COPY client client
COPY server server
RUN pip install . && python -c "import flwr, client.app, client.cli"

RUN useradd --uid 10001 --create-home --home-dir /home/tmc tmc \
    && mkdir -p /var/cache/tmc /home/tmc/.flwr /data \
    && chmod 1777 /var/cache/tmc /home/tmc /home/tmc/.flwr
USER 10001
WORKDIR /home/tmc
CMD ["tmc", "silo", "start", "--help"]

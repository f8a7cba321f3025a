#!/bin/bash
# pip inside an image build (deploy/*.Dockerfile), with the build's optional secrets:
#   pip_ca    a CA bundle (PEM): a TLS-intercepting proxy's or a private index's CA
#   pip_conf  a pip.conf: index URLs with credentials, proxies. Never a build argument,
#             which `docker history` shows to anyone holding the image.
# Secrets are mounted at /run/secrets/ID only when the build is given them (BuildKit and
# buildah both skip an absent, non-required secret).
set -euo pipefail
if [[ -s /run/secrets/pip_ca ]]; then
    export PIP_CERT=/run/secrets/pip_ca
fi
if [[ -s /run/secrets/pip_conf ]]; then
    export PIP_CONFIG_FILE=/run/secrets/pip_conf
fi
# An empty PIP_EXTRA_INDEX_URL would be read as one empty URL.
if [[ -z "${PIP_EXTRA_INDEX_URL:-}" ]]; then
    unset PIP_EXTRA_INDEX_URL
fi
exec /opt/tmc/bin/python -m pip install --no-cache-dir --disable-pip-version-check "$@"

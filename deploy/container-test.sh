#!/usr/bin/env bash
# The compose stack for real, as CI or a developer runs it on one Debian machine with no
# Docker daemon: podman (rootful), a base image made with debootstrap, both images built
# from this checkout, the stack up, silos registered, two rounds, the served model queried
# (tmc serve), a silo forgotten through the admin API and gone from the served model, its
# node unregistered, the registry verified; then everything this
# script started is removed (containers, volumes, network, index server, temp folder),
# also on failure or Ctrl-C. Built images are kept (reruns reuse their layers) unless
# --remove-images.
#
#   sudo deploy/container-test.sh [options]            # or: pytest -m containers
#
# Options (environment variables in brackets):
#   --pip-index-url URL     package index for the builds [TMC_PIP_INDEX_URL]
#   --pip-extra-index-url URL                            [TMC_PIP_EXTRA_INDEX_URL]
#   --torch-index-url URL   torch/torchvision index (default PyTorch's CPU wheels)
#                           [TMC_TORCH_INDEX_URL]
#   --ca-bundle FILE        CA bundle for a proxy or private index, given to the builds as
#                           the secret pip_ca (default: $PIP_CERT when set) [TMC_CA_BUNDLE]
#   --pip-conf FILE         pip.conf given to the builds as the secret pip_conf [TMC_PIP_CONF]
#   --serve-index DIR       serve DIR (a PEP 503 mirror: DIR/simple/NAME/) on loopback
#                           during the builds and use it as an extra index (builds then
#                           use the host's network; port TMC_SERVE_INDEX_PORT, default
#                           39217, fixed so that reruns hit the layer cache) [TMC_SERVE_INDEX]
#   --require-cpu-torch     fail when the CPU torch index cannot be reached, instead of
#                           building with PyPI's CUDA torch [TMC_REQUIRE_CPU_TORCH=1]
#   --base-image REF        build on REF instead of a debootstrap image [TMC_BASE_IMAGE]
#   --base-image-only       make the debootstrap base image (if missing), print its
#                           digest-pinned name and stop (to prepare a CI machine)
#   --epochs N              local epochs per component (default 2) [TMC_EPOCHS]
#   --remove-images         also remove the images it built
set -euo pipefail
# The whole script is one compound command, so bash parses it all before running any of it:
# editing the file while a run is under way cannot change what that run executes.
{
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START=$(date +%s)

PIP_INDEX_URL=${TMC_PIP_INDEX_URL:-https://pypi.org/simple}
PIP_EXTRA_INDEX_URL=${TMC_PIP_EXTRA_INDEX_URL:-}
TORCH_INDEX_URL=${TMC_TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
CA_BUNDLE=${TMC_CA_BUNDLE:-${PIP_CERT:-}}
PIP_CONF=${TMC_PIP_CONF:-}
SERVE_INDEX=${TMC_SERVE_INDEX:-}
REQUIRE_CPU_TORCH=${TMC_REQUIRE_CPU_TORCH:-0}
BASE_IMAGE=${TMC_BASE_IMAGE:-}
EPOCHS=${TMC_EPOCHS:-2}
REMOVE_IMAGES=0
BASE_ONLY=0
BASE_TAG=${TMC_BASE_TAG:-localhost/tmc-base/python:3.11-bookworm}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
        --pip-index-url) PIP_INDEX_URL=$2; shift 2 ;;
        --pip-extra-index-url) PIP_EXTRA_INDEX_URL=$2; shift 2 ;;
        --torch-index-url) TORCH_INDEX_URL=$2; shift 2 ;;
        --ca-bundle) CA_BUNDLE=$2; shift 2 ;;
        --pip-conf) PIP_CONF=$2; shift 2 ;;
        --serve-index) SERVE_INDEX=$2; shift 2 ;;
        --require-cpu-torch) REQUIRE_CPU_TORCH=1; shift ;;
        --base-image) BASE_IMAGE=$2; shift 2 ;;
        --epochs) EPOCHS=$2; shift 2 ;;
        --remove-images) REMOVE_IMAGES=1; shift ;;
        --base-image-only) BASE_ONLY=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "container-test: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '[container-test %4ss] %s\n' "$(($(date +%s) - START))" "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

# A project name of its own: never touches a developer's `tmc-federation` stack.
PROJECT=tmc-ct-$$
SERVER_IMAGE=localhost/tmc-federation/server:container-test
SILO_IMAGE=localhost/tmc-federation/silo:container-test
WORK=""
INDEX_PID=""
BUILDING=""   # set during a build: the buildah working containers that existed before it

compose() { podman-compose -p "$PROJECT" -f "$REPO/docker-compose.yml" "$@"; }

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    say "tearing down (exit status so far: $status)"
    if [[ -n $WORK && -d $WORK ]] && command -v podman-compose >/dev/null; then
        compose down -v -t 5 >"$WORK/down.log" 2>&1
    fi
    if command -v podman >/dev/null; then
        # What compose left (a half-created stack, a container compose no longer knows):
        # everything labelled with this run's project.
        local ids label="label=io.podman.compose.project=$PROJECT"
        mapfile -t ids < <(podman ps -aq --filter "$label")
        ((${#ids[@]})) && podman rm -f -t 5 "${ids[@]}" >/dev/null
        mapfile -t ids < <(podman volume ls -q --filter "$label")
        ((${#ids[@]})) && podman volume rm -f "${ids[@]}" >/dev/null
        mapfile -t ids < <(podman network ls -q --filter "$label")
        ((${#ids[@]})) && podman network rm -f "${ids[@]}" >/dev/null
        podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
        if [[ -n $BUILDING ]]; then
            # An interrupted `podman build` leaves its working containers behind (seen with
            # buildah 1.28): remove those that appeared during this run's build.
            local c
            for c in $(buildah containers -q 2>/dev/null); do
                [[ " $BUILDING " == *" $c "* ]] || buildah rm "$c" >/dev/null 2>&1
            done
        fi
        if ((REMOVE_IMAGES)); then
            podman rmi -f "$SERVER_IMAGE" "$SILO_IMAGE" >/dev/null 2>&1
        fi
        local left
        left=$(podman ps -aq --filter "$label")
        left+=$(podman volume ls -q --filter "$label")
        [[ -z $left ]] || say "WARNING: left behind: $left" >&2
    fi
    if [[ -n $INDEX_PID ]]; then
        kill "$INDEX_PID" 2>/dev/null
        wait "$INDEX_PID" 2>/dev/null
    fi
    [[ -n $WORK ]] && rm -rf "$WORK"
    say "done in $(($(date +%s) - START)) s, exit status $status"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- 1. tools ---------------------------------------------------------------------------
if ((EUID != 0)); then
    fail "run as root (sudo): it installs podman and runs rootful containers as the uid " \
        "that owns the test's keys; nothing was started"
fi
missing=()
for tool in podman buildah runc podman-compose debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman buildah runc podman-compose debootstrap catatonit netavark aardvark-dns \
        containernetworking-plugins uidmap >/dev/null
fi
say "$(podman --version), $(podman-compose --version 2>/dev/null | grep -i compose | head -1)"

VENV=${TMC_VENV:-$REPO/.venv}
if [[ ! -x $VENV/bin/tmc ]]; then
    say "no project environment at $VENV: make install"
    make -C "$REPO" install >/dev/null
fi
export PATH=$VENV/bin:$PATH FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

WORK=$(mktemp -d /tmp/tmc-container-test.XXXXXX)
chmod 0755 "$WORK"

# -- 2. container runtime settings ------------------------------------------------------
# podman's defaults ask for nofile=1048576 and an unlimited nproc; without
# CAP_SYS_RESOURCE (sandboxes, some CI runners) runc cannot set them and every container
# fails with "error setting rlimit type 7: operation not permitted". Then use this
# machine's own hard limits, in a containers.conf of this run (CONTAINERS_CONF replaces
# the system's files for this run only).
probe_runtime() { podman run --rm --network none "$1" true >"$WORK/probe.log" 2>&1; }

# -- 3. base image ----------------------------------------------------------------------
if [[ -z $BASE_IMAGE ]]; then
    if ! podman image exists "$BASE_TAG"; then
        say "making the base image (debootstrap --variant=minbase bookworm + python3)"
        nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
            || fail "debootstrap failed: $(tail -3 "$WORK/debootstrap.log")"
        rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
        tar -C "$WORK/rootfs" --numeric-owner -c . \
            | podman import --change 'CMD ["/bin/bash"]' - "$BASE_TAG" >"$WORK/import.log" 2>&1 \
            || fail "podman import of the base image failed: $(tail -3 "$WORK/import.log")"
        rm -rf "$WORK/rootfs"
    fi
    # Pinned by digest, as the Dockerfiles' default base is.
    BASE_IMAGE="${BASE_TAG%:*}@$(podman image inspect --format '{{.Digest}}' "$BASE_TAG")"
fi
say "base image $BASE_IMAGE"
if ((BASE_ONLY)); then
    echo "$BASE_IMAGE"
    exit 0
fi
if ! probe_runtime "$BASE_IMAGE"; then
    if grep -q "setting rlimit" "$WORK/probe.log"; then
        nofile=$(ulimit -Hn)
        cat >"$WORK/containers.conf" <<EOF
# deploy/container-test.sh: podman's default ulimits exceed this machine's hard limits.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
        export CONTAINERS_CONF=$WORK/containers.conf
        say "podman's default ulimits exceed this machine's limits: nofile=$nofile, nproc=4096"
        probe_runtime "$BASE_IMAGE" || fail "containers cannot start: $(cat "$WORK/probe.log")"
    else
        fail "containers cannot start here: $(cat "$WORK/probe.log")"
    fi
fi

# -- 4. images --------------------------------------------------------------------------
build_args=(--layers --pull=never --build-arg "BASE_IMAGE=$BASE_IMAGE"
    --build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
if [[ -n $CA_BUNDLE ]]; then
    [[ -r $CA_BUNDLE ]] || fail "CA bundle $CA_BUNDLE cannot be read; nothing was built"
    build_args+=(--secret "id=pip_ca,src=$CA_BUNDLE")
fi
if [[ -n $PIP_CONF ]]; then
    [[ -r $PIP_CONF ]] || fail "pip.conf $PIP_CONF cannot be read; nothing was built"
    build_args+=(--secret "id=pip_conf,src=$PIP_CONF")
fi
extra=$PIP_EXTRA_INDEX_URL
if [[ -n $SERVE_INDEX ]]; then
    [[ -d $SERVE_INDEX/simple ]] || fail "--serve-index $SERVE_INDEX has no simple/ folder"
    # A fixed port: the index URL is a build argument, and a new URL each run would miss
    # the layer cache of every step after it (a full rebuild, several minutes).
    port=${TMC_SERVE_INDEX_PORT:-39217}
    if ! python3 -c "import socket,sys; socket.socket().bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null; then
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        say "port ${TMC_SERVE_INDEX_PORT:-39217} is taken: serving on $port (the layer cache will miss)"
    fi
    python3 -m http.server --bind 127.0.0.1 --directory "$SERVE_INDEX" "$port" \
        >"$WORK/index.log" 2>&1 &
    INDEX_PID=$!
    served=http://127.0.0.1:$port/simple
    for _ in $(seq 50); do curl -fsS -o /dev/null "$served/" 2>/dev/null && break; sleep 0.2; done
    extra="${extra:+$extra }$served"
    build_args+=(--network host)   # the builds reach the loopback index
    say "serving $SERVE_INDEX at $served for the builds"
fi
build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra")

# The CPU wheels of torch live on PyTorch's own index. Where it cannot be reached (this
# project's development machines reach only PyPI), the only torch 2.14.1 for Linux x86_64
# is PyPI's CUDA build: the images then carry CUDA (about 4.5 GB more) and say so.
curl_ca=()
[[ -n $CA_BUNDLE ]] && curl_ca=(--cacert "$CA_BUNDLE")
variant=cpu
if ! curl -fsS -m 20 "${curl_ca[@]}" -o /dev/null "${TORCH_INDEX_URL%/}/torch/" 2>"$WORK/torch-index.log"; then
    if ((REQUIRE_CPU_TORCH)); then
        fail "the CPU torch index $TORCH_INDEX_URL cannot be reached ($(cat "$WORK/torch-index.log")); nothing was built"
    fi
    say "WARNING: $TORCH_INDEX_URL cannot be reached ($(tr -d '\n' <"$WORK/torch-index.log")):"
    say "WARNING: building with PyPI's CUDA torch; the images will be about 4.5 GB larger"
    variant=cuda
    TORCH_INDEX_URL=${served:-$PIP_INDEX_URL}
fi
build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" --build-arg "TORCH_VARIANT=$variant")

for image in server silo; do
    tag=$SERVER_IMAGE
    [[ $image == silo ]] && tag=$SILO_IMAGE
    say "building $tag (torch: $variant, from $TORCH_INDEX_URL)"
    started=$(date +%s)
    BUILDING="- $(buildah containers -q | tr '\n' ' ')"
    if ! nice -n 10 podman build "${build_args[@]}" -f "$REPO/deploy/Dockerfile" --target "$image" \
        --ignorefile "$REPO/deploy/Dockerfile.dockerignore" -t "$tag" "$REPO" \
        >"$WORK/build-$image.log" 2>&1; then
        tail -30 "$WORK/build-$image.log" >&2
        fail "building the $image image failed (log above)"
    fi
    BUILDING=""
    say "built $tag in $(($(date +%s) - started)) s: $(podman image inspect --format '{{.Size}}' "$tag" \
        | awk '{printf "%.2f GB", $1 / 1e9}')"
done
if [[ -n $INDEX_PID ]]; then
    kill "$INDEX_PID"; wait "$INDEX_PID" 2>/dev/null || true; INDEX_PID=""
fi

# -- 5. credentials and data ------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SL_PORT=$(free_port)
AD_PORT=$(free_port)
MT_PORT=$(free_port)
SV_PORT=$(free_port)
DB_PORT=$(free_port)
C=$WORK/credentials
python "$REPO/deploy/credentials.py" --out "$C" --silos silo-0,silo-1,silo-2 \
    --hosts localhost,127.0.0.1,superlink,admin --superlink "127.0.0.1:$SL_PORT" >/dev/null
tmc data export --out "$WORK/data" --silos 3 >/dev/null
# The containers run as the keys' owner; as root, that is a uid of the test's own
# (containers never run as root), which then owns the keys and the data.
if ((EUID == 0)); then TMC_UID=10001 TMC_GID=10001; else TMC_UID=$(id -u) TMC_GID=$(id -g); fi
chown -R "$TMC_UID:$TMC_GID" "$C" "$WORK/data"
export TMC_UID TMC_GID TMC_CREDENTIALS=$C TMC_DATA=$WORK/data \
    TMC_SERVER_IMAGE=$SERVER_IMAGE TMC_SILO_IMAGE=$SILO_IMAGE \
    TMC_SUPERLINK_PUBLISH=127.0.0.1:$SL_PORT TMC_ADMIN_PUBLISH=127.0.0.1:$AD_PORT \
    TMC_METRICS_PUBLISH=127.0.0.1:$MT_PORT TMC_SERVE_PUBLISH=127.0.0.1:$SV_PORT \
    TMC_DASHBOARD_PUBLISH=127.0.0.1:$DB_PORT TMC_LOG_FORMAT=json
export FLWR_HOME=$C/flwr
say "credentials and data for silo-0..2 in $WORK (uid $TMC_UID); SuperLink 127.0.0.1:$SL_PORT, admin API 127.0.0.1:$AD_PORT"

container() {  # the container of compose service $1
    podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}
wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || return 1
        sleep 2
    done
    say "$what after $(($(date +%s) - START)) s"
}
logs_of() { for s in "$@"; do echo "--- $s"; podman logs --tail 40 "$(container "$s")" 2>&1; done; }

# -- 6. the stack -----------------------------------------------------------------------
say "compose up: superlink, superexec-serverapp, admin"
compose up -d --no-build superlink superexec-serverapp admin >"$WORK/up-server.log" 2>&1 \
    || { cat "$WORK/up-server.log" >&2; fail "compose up of the server side failed"; }
# Run the compose file's own health checks (podman 4.3 schedules them with systemd timers,
# which a container host without systemd lacks; docker runs them itself).
wait_for 120 "SuperLink healthy (its gRPC health server)" podman healthcheck run "$(container superlink)" \
    || { logs_of superlink; fail "the SuperLink did not become healthy in 120 s"; }
wait_for 120 "SuperExec healthy" podman healthcheck run "$(container superexec-serverapp)" \
    || { logs_of superexec-serverapp; fail "the ServerApp executor did not become healthy"; }

say "registering the silo keys (register.sh)"
sh "$C/register.sh" >"$WORK/register.log" 2>&1 || { cat "$WORK/register.log"; fail "register.sh failed"; }
say "compose up: silo-0 silo-1 silo-2"
compose up -d --no-build silo-0 silo-1 silo-2 >"$WORK/up-silos.log" 2>&1 \
    || { cat "$WORK/up-silos.log" >&2; fail "compose up of the silos failed"; }
# shellcheck disable=SC2317  # called through wait_for
online() { [[ $(tmc nodes list --json | python3 -c 'import json,sys; print(sum(n["status"] == "online" for n in json.load(sys.stdin)["nodes"]))') == 3 ]]; }
wait_for 180 "3 silo nodes online" online || { logs_of silo-0 silo-1 silo-2; fail "the silos did not come online"; }
tmc nodes list
for s in silo-0 silo-1 silo-2; do  # the SuperNode's own gRPC health service, as compose checks it
    wait_for 60 "$s healthy (its SuperNode's health server)" podman healthcheck run "$(container "$s")" \
        || { logs_of "$s"; fail "$s did not become healthy"; }
done

# -- 7. two rounds ----------------------------------------------------------------------
say "flwr run: 2 rounds, $EPOCHS epochs, authenticated silos"
run_config="registry=\"/var/lib/tmc/registry\" min-silos=3 require-authenticated-silos=true rounds=2 epochs=$EPOCHS"
started=$(date +%s)
if ! (cd "$REPO" && timeout 1500 flwr run . tmc --stream --run-config "$run_config") >"$WORK/run.log" 2>&1; then
    tail -40 "$WORK/run.log" >&2
    logs_of superexec-serverapp silo-0
    fail "flwr run failed"
fi
say "flwr run done in $(($(date +%s) - started)) s; its stream (ServerApp lines):"
grep -E "round|accepted|refused|base " "$WORK/run.log" | sed 's/\x1b\[[0-9;]*m//g' | head -40
grep -q "round 2" "$WORK/run.log" || fail "flwr run --stream showed no round progress"

# -- 8. forget a silo over the admin API, gone from the served model; verify; unregister ---
admin=(--server "127.0.0.1:$AD_PORT" --ca-cert "$C/ca/ca.crt" --token-file "$C/operator.token")
wait_for 90 "admin API serving" tmc registry list "${admin[@]}" --json \
    || { logs_of admin; fail "the admin API did not come up"; }
wait_for 60 "admin API healthy (its gRPC health service, over TLS)" podman healthcheck run "$(container admin)" \
    || { logs_of admin; fail "the admin API's health check failed"; }
metric() {  # metric NAME: its value on the admin server's /metrics
    curl -fsS "http://127.0.0.1:$MT_PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'
}
[[ $(metric tmc_model_version) != "" && $(metric tmc_model_version) != "0.0" ]] \
    || fail "the admin server's /metrics shows no model version"
tmc registry list "${admin[@]}"
count() { tmc registry list "${admin[@]}" --json --silo "$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
before=$(count silo-1)
((before == 2)) || fail "silo-1 should have 2 components after 2 rounds, has $before"
silo1_ids=$(tmc registry list "${admin[@]}" --json --silo silo-1 | python3 -c 'import json,sys; print(",".join(c["id"] for c in json.load(sys.stdin)))')

say "compose up: serve (the current model over HTTP)"
compose up -d --no-build serve >"$WORK/up-serve.log" 2>&1 \
    || { cat "$WORK/up-serve.log" >&2; fail "compose up of tmc serve failed"; }
wait_for 120 "tmc serve healthy (GET /healthz)" podman healthcheck run "$(container serve)" \
    || { logs_of serve; fail "tmc serve did not become healthy"; }
served() {  # served: "VERSION IDS" of the model tmc serve answers from
    curl -fsS --cacert "$C/ca/ca.crt" -H "Authorization: Bearer $(cat "$C/operator.token")" \
        "https://localhost:$SV_PORT/v1/model" \
        | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["version"], ",".join(m["component_ids"]))'
}
read -r version_before ids_before <<<"$(served)"
for id in ${silo1_ids//,/ }; do
    [[ ,$ids_before, == *,$id,* ]] || fail "the served model (version $version_before) lacks silo-1's component $id"
done
say "served model: version $version_before, $(tr ',' '\n' <<<"$ids_before" | wc -l) components (silo-1's among them)"

say "forgetting silo-1 through the admin API"
tmc forget "${admin[@]}" --silo silo-1 --reason "container test" --json
forgotten_at=$(date +%s%N)
after=$(count silo-1)
((after == 0)) || fail "silo-1 still has $after active components after tmc forget"
# shellcheck disable=SC2317  # called through wait_for
silo1_gone() {
    local version ids
    read -r version ids <<<"$(served)"
    [[ $version != "$version_before" ]] || return 1
    for id in ${silo1_ids//,/ }; do [[ ,$ids, != *,$id,* ]] || return 1; done
}
wait_for 10 "silo-1 out of the served model" silo1_gone || fail "tmc serve still answers with silo-1's components"
say "the served model dropped silo-1 $(( ($(date +%s%N) - forgotten_at) / 1000000 )) ms after the forget returned"
[[ $(metric tmc_forgets_total) == "2.0" ]] || fail "/metrics: tmc_forgets_total is $(metric tmc_forgets_total), expected 2"
podman exec "$(container admin)" tmc registry verify --registry /var/lib/tmc/registry \
    || fail "tmc registry verify failed after the forget"
say "registry verified bit for bit; unregistering silo-1's node by name"
tmc nodes unregister --silo silo-1
tmc nodes list --all
tmc nodes list --json --all | python3 -c '
import json, sys
nodes = {n["silo"]: n["status"] for n in json.load(sys.stdin)["nodes"]}
assert nodes.get("silo-1") == "unregistered", nodes' || fail "silo-1's node is not unregistered"

for image in "$SERVER_IMAGE" "$SILO_IMAGE"; do
    say "image $image: $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.2f GB (%.0f bytes)", $1 / 1e9, $1}'), torch $variant"
done
say "PASSED"
exit 0
}

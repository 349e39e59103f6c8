#!/bin/sh
# `make compose-test`: the laptop stack of compose.yaml, run here by podman-compose with the
# local Debian-package images (compose.local.yaml): builds them (and the tools image), brings
# the stack up under its own project name, waits for the API's /readyz, places and pays one
# order end to end (tests/blackbox/smoke.py --pay: the payment goes to the emulator, the
# worker sends the confirmation mail), checks the mail reached the SMTP catcher and that the
# bootstrap made the admin, then tears everything down with its volumes.
#   COMPOSE_TEST_PORT (a free port), IMAGE, IMAGE_TAG
set -eu
. deploy/image/env.sh
# the services find each other by name (postgres, redis, ...) through the network's DNS:
# CNI's dnsname plugin or netavark's aardvark-dns, which Debian's podman only recommends (an
# install without recommends lacks it, and the bootstrap then cannot resolve "postgres")
case $(podman info --format '{{.Host.NetworkBackend}}') in
    netavark) need_tools /usr/lib/podman/aardvark-dns:aardvark-dns ;;
    *) need_tools /usr/lib/cni/dnsname:golang-github-containernetworking-plugin-dnsname ;;
esac
sh deploy/image/base.sh debian
bin=.venv/bin
base=localhost/storefront-base:bookworm
build_base=localhost/storefront-build-base:bookworm
debian=localhost/storefront-debian:bookworm
ca=""
[ -s /etc/ssl/certs/ca-certificates.crt ] && ca="--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt"
started=$(date +%s)
for service in postgres redis rabbitmq; do
    podman build --quiet --network host --format docker --file "deploy/compose/$service.Containerfile" \
        --build-arg "DEBIAN_IMAGE=$debian" --tag "localhost/storefront-$service:bookworm" . >/dev/null
done
# shellcheck disable=SC2086
podman build --quiet --network host --format docker --file deploy/compose/tools.Containerfile $ca \
    --build-arg "BASE_IMAGE=$base" --build-arg "BUILD_BASE_IMAGE=$build_base" \
    --tag localhost/storefront-tools:dev . >/dev/null
echo "compose-test: images built ($(( $(date +%s) - started )) s)"

port=${COMPOSE_TEST_PORT:-$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
project=storefront-compose-test-$$
STOREFRONT_PORT=$port
APP_IMAGE=${IMAGE:-localhost/storefront}:${IMAGE_TAG:-dev}
ADMIN_EMAIL=admin@example.com
ADMIN_PASSWORD=compose-Admin-passw0rd-$$
export STOREFRONT_PORT APP_IMAGE ADMIN_EMAIL ADMIN_PASSWORD
compose() {
    "$bin/podman-compose" --project-name "$project" \
        -f deploy/compose/compose.yaml -f deploy/compose/compose.local.yaml "$@"
}
fail() {
    echo "compose-test: FAILED: $*" >&2
    for service in bootstrap api worker payments; do
        echo "--- $service" >&2
        podman logs --tail 30 "${project}_${service}_1" >&2 2>&1 || true
    done
    exit 1
}
cleanup() { compose down --volumes --timeout 30 >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

up_started=$(date +%s)
compose up -d >.tools/compose-up.log 2>&1 || { cat .tools/compose-up.log >&2; fail "podman-compose up"; }
"$bin/python" -m tests.blackbox.smoke --base-url "http://127.0.0.1:$port" --wait 180 --pay \
    || fail "the order end to end"
echo "compose-test: one order placed and paid ($(( $(date +%s) - up_started )) s after up)"

podman logs "${project}_bootstrap_1" 2>&1 | grep -q "admin@example.com" \
    || fail "the bootstrap did not report the admin"
podman logs "${project}_bootstrap_1" 2>&1 | grep -q "secrets: generated" \
    || fail "the secrets were not generated"
# the worker sends the order confirmation; the SMTP catcher prints it
deadline=$(( $(date +%s) + 60 ))
until podman logs "${project}_mail_1" 2>&1 | grep -q "smoke-customer-"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "no confirmation mail reached the SMTP catcher"
    sleep 2
done
echo "compose-test: bootstrap (secrets, migrate, admin) ran; the confirmation mail was caught"
echo "compose-test: passed ($(( $(date +%s) - started )) s with the image builds)"

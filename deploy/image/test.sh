#!/bin/sh
# `make image-test`: runs the image built by `make image` as an operator would, in
# production mode against this machine's PostgreSQL and Redis (host network), in a fresh
# database it creates and drops: `secrets generate`, `migrate`, `admin create`, then `serve`
# with a read-only root filesystem, no capabilities and no privilege escalation. It waits for
# /readyz, runs the black-box smoke test (tests/blackbox/smoke.py), checks the process is
# non-root, the root filesystem refuses writes, no compiler/pip/uv/apt is in the image, the
# metrics port and the HEALTHCHECK answer, and that SIGTERM drains and exits 0.
#   IMAGE, IMAGE_TAG; PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres);
#   IMAGE_TEST_REDIS_URL (redis://127.0.0.1:6379/0)
set -eu
. deploy/image/env.sh
image=${IMAGE:-localhost/storefront}:${IMAGE_TAG:-dev}
PGHOST=${PGHOST:-127.0.0.1}; PGPORT=${PGPORT:-5432}; PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER
redis_url=${IMAGE_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
run_id=$$
db=storefront_image_test_$run_id
name=storefront-image-test-$run_id
work=.tools/image/test-$run_id
free_port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port); metrics_port=$(free_port)
fail() { echo "image-test: FAILED: $*" >&2; podman logs --tail 40 "$name" >&2 2>/dev/null || true; exit 1; }
check() { echo "image-test: ok: $*"; }

cleanup() {
    podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
    dropdb --if-exists "$db" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work"
createdb "$db"
# the bootstrap an operator runs (docs/deploy.md): secrets from the image itself
(umask 077; podman run --rm --network none --health-cmd none "$image" secrets generate > "$work/secrets.env")
grep -q '^STOREFRONT_AUTH__JWT_SECRET=' "$work/secrets.env" || fail "secrets generate printed no JWT secret"
cat >> "$work/secrets.env" <<ENV
STOREFRONT_DEPLOYMENT_NAME=image-test-$run_id
STOREFRONT_DATABASE_URL=postgresql://$PGUSER@$PGHOST:$PGPORT/$db
STOREFRONT_REDIS_URL=$redis_url
STOREFRONT_PORT=$port
STOREFRONT_OBSERVABILITY__METRICS_PORT=$metrics_port
ENV
# hardened like the Kubernetes pods: read-only root, /tmp a tmpfs, no capabilities
hardened="--network host --read-only --tmpfs /tmp:rw,nosuid,nodev,size=64m --cap-drop ALL --security-opt no-new-privileges --env-file $work/secrets.env"

# shellcheck disable=SC2086
podman run --rm --health-cmd none $hardened "$image" migrate
# shellcheck disable=SC2086
printf '%s\n' "image-test-Admin-passw0rd-$run_id" \
    | podman run --rm -i --health-cmd none $hardened "$image" admin create "admin-$run_id@example.com" --password-stdin
check "secrets generate, migrate and admin create ran in the image"

# shellcheck disable=SC2086
podman run -d --name "$name" $hardened "$image" serve >/dev/null
started=$(date +%s)
.venv/bin/python -m tests.blackbox.smoke --base-url "http://127.0.0.1:$port" --wait 60 \
    || fail "the smoke test against the image"
check "ready and the smoke test passed ($(( $(date +%s) - started )) s after start)"

uid=$(podman exec "$name" id -u)
[ "$uid" = 10001 ] || fail "the server runs as uid $uid, not 10001"
[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true ] \
    || fail "the root filesystem is not read-only"
if podman exec "$name" sh -c 'echo x > /probe' 2>/dev/null; then fail "/ is writable"; fi
if podman exec "$name" sh -c 'echo x > /app/probe' 2>/dev/null; then fail "/app is writable"; fi
podman exec "$name" sh -c 'echo x > /tmp/probe && rm /tmp/probe' || fail "/tmp is not writable"
check "runs as uid $uid; / and /app refuse writes, /tmp (tmpfs) takes them"
found=$(podman exec "$name" sh -c 'for t in gcc cc c++ make pip pip3 uv apt-get apt; do command -v $t; done; find /var/lib/apt/lists /var/cache/apt -type f ! -name lock 2>/dev/null; find / -xdev \( -name "*.whl" -o -path "*/.cache/*" \) 2>/dev/null | head -3' || true)
[ -z "$found" ] || fail "found in the image: $found"
check "no compiler, pip, uv or apt, no package lists, caches or wheels"
.venv/bin/python - "$metrics_port" <<'PY' || fail "the metrics port"
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
assert "http_requests_total" in body or "storefront_" in body, body[:300]
PY
check "metrics at :$metrics_port/metrics"
podman healthcheck run "$name" 2>/dev/null || fail "the HEALTHCHECK command"
check "the HEALTHCHECK command passes"

# SIGTERM as an orchestrator sends it: readiness fails at once while requests are still
# served (the drain), then the server stops by itself with exit code 0
stop_started=$(date +%s)
podman kill --signal TERM "$name" >/dev/null
.venv/bin/python - "$port" <<'PY' || fail "no drain after SIGTERM (/readyz 503 while /livez serves)"
import sys, time, urllib.error, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 2
while True:
    try:
        urllib.request.urlopen(base + "/readyz", timeout=2)
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            break
    if time.monotonic() > deadline:
        sys.exit("readyz still 200 two seconds after SIGTERM")
    time.sleep(0.1)
urllib.request.urlopen(base + "/livez", timeout=2)  # still serving while draining
PY
code=$(podman wait "$name")
stopped=$(( $(date +%s) - stop_started ))
podman logs "$name" > .tools/image/image-test.log 2>&1
# uvicorn re-raises the signal it handled once its graceful shutdown is complete, so a clean
# stop on SIGTERM exits 143 (128 + 15) through tini; anything else is a failure
[ "$code" = 0 ] || [ "$code" = 143 ] || fail "exit code $code after SIGTERM"
grep -q "SIGTERM: draining" .tools/image/image-test.log || fail "no drain in the log after SIGTERM"
grep -q "Application shutdown complete" .tools/image/image-test.log \
    || fail "no complete shutdown in the log after SIGTERM"
check "SIGTERM: /readyz 503 at once while /livez served; shutdown complete in ${stopped} s (exit $code)"
echo "image-test: passed ($image, $(( ($(podman image inspect --format '{{.Size}}' "$image") + 999999) / 1000000 )) MB)"

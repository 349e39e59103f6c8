#!/bin/sh
# `make image`: the base images (mmdebstrap, unless IMAGE_BASE names another), hadolint, the
# image, its CycloneDX SBOM (the Python distributions installed in the image, each checked
# against uv.lock), and its size against the budget (decision 0161).
#   IMAGE (localhost/storefront), IMAGE_TAG (dev), IMAGE_BASE / IMAGE_BUILD_BASE (the
#   mmdebstrap bases), IMAGE_BUDGET_MB (400), SBOM_DIR (dist/sbom)
set -eu
. deploy/image/env.sh
image=${IMAGE:-localhost/storefront}:${IMAGE_TAG:-dev}
base=${IMAGE_BASE:-localhost/storefront-base:bookworm}
build_base=${IMAGE_BUILD_BASE:-localhost/storefront-build-base:bookworm}
budget_mb=${IMAGE_BUDGET_MB:-400}
sbom_dir=${SBOM_DIR:-dist/sbom}
bin=.venv/bin

if [ "$base" = localhost/storefront-base:bookworm ]; then
    sh deploy/image/base.sh
fi
"$bin/hadolint" Containerfile deploy/compose/*.Containerfile

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
ca=""
[ -s /etc/ssl/certs/ca-certificates.crt ] && ca="--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt"
# shellcheck disable=SC2086  # $ca: the optional build secret (a TLS-inspecting proxy's CA)
podman build --quiet --format docker --network host --file Containerfile $ca \
    --build-arg "BASE_IMAGE=$base" --build-arg "BUILD_BASE_IMAGE=$build_base" \
    --label "org.opencontainers.image.title=storefront" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.base.name=$base" \
    --tag "$image" . >/dev/null

# every shared library the wheels link must be in the base (manylinux leaves libstdc++,
# libgcc and libc to the system): an import would fail only when first used
unresolved=$(podman run --rm --network none --health-cmd none --entrypoint sh "$image" -c \
    'find /app/.venv -name "*.so*" -type f -exec ldd {} + 2>/dev/null | grep "not found" | sort -u')
if [ -n "$unresolved" ]; then
    echo "error: shared libraries missing from the base image:" >&2
    echo "$unresolved" >&2
    exit 1
fi

# the SBOM: the Python distributions installed in the image (read from the image itself),
# each checked against uv.lock's runtime set, with the project as the root component
mkdir -p "$sbom_dir" .tools/image
podman run --rm --network none --health-cmd none --entrypoint python3 "$image" -c '
import importlib.metadata as m
for d in m.distributions():
    if d.metadata["Name"].lower() != "storefront":
        print(d.metadata["Name"] + "==" + d.version)' | sort > .tools/image/installed.txt
.tools/bin/uv export --quiet --locked --no-dev --no-emit-project --no-hashes \
    --format requirements-txt --output-file .tools/image/locked.txt
normal() { sed 's/[-_.]\{1,\}/-/g; s/ .*//' "$1" | tr '[:upper:]' '[:lower:]' | sort -u; }
normal .tools/image/locked.txt > .tools/image/locked.norm
unlocked=$(normal .tools/image/installed.txt | comm -23 - .tools/image/locked.norm)
if [ -n "$unlocked" ]; then
    echo "error: installed in the image but not in uv.lock's runtime set at that version:" >&2
    echo "$unlocked" >&2
    exit 1
fi
sbom="$sbom_dir/storefront-${IMAGE_TAG:-dev}.cdx.json"
# (its warning that the root component lists no dependency graph is expected: a flat list)
PYTHONWARNINGS=ignore::UserWarning "$bin/cyclonedx-py" requirements --pyproject pyproject.toml --output-reproducible \
    --output-file "$sbom" .tools/image/installed.txt
components=$(wc -l < .tools/image/installed.txt)

size=$(podman image inspect --format '{{.Size}}' "$image")
size_mb=$(( (size + 999999) / 1000000 ))
echo "image $image: $size_mb MB (budget $budget_mb MB), SBOM $sbom ($components Python packages, as installed)"
if [ "$size_mb" -gt "$budget_mb" ]; then
    echo "error: the image is $size_mb MB, over its budget of $budget_mb MB (IMAGE_BUDGET_MB)" >&2
    exit 1
fi

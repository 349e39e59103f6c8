#!/bin/sh
# Builds the Debian bookworm base images where no public image registry is reachable, with
# mmdebstrap from this machine's own Debian sources (reproducible from the package archive
# alone; decision 0158):
#   runtime  localhost/storefront-base:bookworm        python3.11, libstdc++ (greenlet and
#            other wheels link it, as manylinux allows), CA certificates, tzdata; Debian's
#            "essential" variant: dpkg but no apt, no compiler, no documentation
#   build    localhost/storefront-build-base:bookworm  the same plus python3.11-venv (pip, to
#            install uv) and tini
#   debian   localhost/storefront-debian:bookworm      the "minbase" variant (with apt), as
#            debian:bookworm-slim, for the compose stack's PostgreSQL, Redis and RabbitMQ
# merged /usr is set up by mmdebstrap itself (no usrmerge, hence no perl). An image that
# already exists is kept; FORCE=1 rebuilds.
# Usage: deploy/image/base.sh [runtime] [build] [debian]   (default: runtime build; root)
set -eu
. deploy/image/env.sh
need_tools mmdebstrap:mmdebstrap
work=.tools/image
mkdir -p "$work"

mirrors=""
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -s "$f" ] && grep -q bookworm "$f"; then mirrors="$mirrors $f"; fi
done

build() {  # tag, variant, packages
    tag=$1 variant=$2 packages=$3
    if [ -z "${FORCE:-}" ] && podman image exists "$tag"; then
        echo "base image $tag: present (FORCE=1 rebuilds)"; return 0
    fi
    tar="$work/$(echo "$tag" | tr ':/' '__').tar"
    echo "base image $tag: mmdebstrap bookworm ($variant${packages:+: }$packages)"
    # shellcheck disable=SC2086  # $mirrors: one argument per sources file
    mmdebstrap --quiet --variant="$variant" --mode=root --format=tar \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        ${packages:+--include="$packages"} \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
        bookworm "$tar" $mirrors >"$tar.log" 2>&1 || { cat "$tar.log" >&2; return 1; }
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/sh"]' \
        "$tar" "$tag" >/dev/null
    rm -f "$tar" "$tar.log"
    echo "base image $tag: $(( $(podman image inspect --format '{{.Size}}' "$tag") / 1000000 )) MB"
}

python="python3,libstdc++6,ca-certificates,tzdata,netbase,passwd"
pids=""
for target in ${*:-runtime build}; do
    case $target in
        runtime) build localhost/storefront-base:bookworm essential "$python" & ;;
        build) build localhost/storefront-build-base:bookworm essential "$python,python3.11-venv,tini" & ;;
        debian) build localhost/storefront-debian:bookworm minbase "ca-certificates" & ;;
        *) echo "usage: $0 [runtime] [build] [debian]" >&2; exit 2 ;;
    esac
    pids="$pids $!"
done
for pid in $pids; do wait "$pid"; done

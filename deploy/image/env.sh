# Sourced by the image and compose scripts (sh): the container tools, installed from Debian
# when missing (as root), and a containers.conf of our own for podman/buildah, written under
# .tools/ (CONTAINERS_CONF points at it; /etc is left alone): this machine kind's kernel
# needs the runc runtime and explicit default ulimits no higher than the caller's hard limits
# (the container is refused otherwise: no CAP_SYS_RESOURCE here).
# need_tools TOOL:PACKAGE...: install the Debian packages of the missing tools (as root); a
# TOOL that is an absolute path is a file that must be executable (a plugin off the PATH)
need_tools() {
    missing=""
    for tool in "$@"; do
        case ${tool%%:*} in
            /*) [ -x "${tool%%:*}" ] || missing="$missing ${tool#*:}" ;;
            *) command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool#*:}" ;;
        esac
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "error: missing tools:$missing" >&2
        echo "fix: apt-get install$missing (as root)" >&2
        exit 2
    fi
    echo "installing (Debian packages):$missing"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
# podman (it builds too, with buildah's library) and runc; as root nothing else is needed
# (rootless podman would also want uidmap, fuse-overlayfs and slirp4netns)
need_tools podman:podman runc:runc

tools_dir=$(pwd)/.tools
mkdir -p "$tools_dir"
hard_nofile=$(ulimit -Hn)
hard_nproc=$(ulimit -Hu 2>/dev/null || ulimit -Hp)  # bash: -u; dash: -p
[ "$hard_nofile" = unlimited ] && hard_nofile=65536
[ "$hard_nproc" = unlimited ] && hard_nproc=32768
nofile=$(( hard_nofile < 65536 ? hard_nofile : 65536 ))
nproc=$(( hard_nproc / 2 < 32768 ? hard_nproc / 2 : 32768 ))
cat > "$tools_dir/containers.conf" <<CONF
# written by deploy/image/env.sh: runc, and ulimits within this shell's hard limits
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
CONF
CONTAINERS_CONF="$tools_dir/containers.conf"
export CONTAINERS_CONF

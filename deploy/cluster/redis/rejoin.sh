#!/usr/bin/env bash
# After a drill: restart whatever Redis process is down; a killed master comes back as the
# replica of the master the sentinels promoted (up.sh does it).
exec bash "$(dirname "$0")/up.sh"

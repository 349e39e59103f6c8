#!/usr/bin/env bash
# After a drill: start the nodes that are down; they rejoin the cluster (up.sh does it).
exec bash "$(dirname "$0")/up.sh"

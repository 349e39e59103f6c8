#!/bin/sh
# Build stage only: run a command trusting the optional build secret `ca-certificates` (a
# TLS-inspecting proxy's CA bundle) when it was given, else the image's own CA bundle.
if [ -s /run/secrets/ca-certificates ]; then
    SSL_CERT_FILE=/run/secrets/ca-certificates
    PIP_CERT=/run/secrets/ca-certificates
    export SSL_CERT_FILE PIP_CERT
fi
exec "$@"

#!/bin/sh
# A smoke script: progress on stdout, the failure on stderr.
set -e
echo "smoke: GET /healthz returned 200"
echo "smoke: GET /api/users returned 503" >&2
exit 1

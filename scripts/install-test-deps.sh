#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian machine: redis-server
# (the tests start their own throwaway servers) and a pinned staticcheck.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: install it (Debian: apt-get install redis-server) and run make test again" >&2
    exit 1
  fi
fi

gobin="$(go env GOPATH)/bin"
want="0.8.2"
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "($want)"; then
  echo "installing staticcheck v$want"
  go install "honnef.co/go/tools/cmd/staticcheck@v$want"
fi

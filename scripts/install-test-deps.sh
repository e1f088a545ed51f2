#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian machine: redis-server
# (the tests start their own throwaway servers, Sentinels included:
# redis-server --sentinel), redis-cli (which builds the test clusters), nginx
# and Chromium (the browser tests start their own nginx process from
# deploy/nginx.conf, and need no nginx service) and a pinned staticcheck.
set -euo pipefail

# Debian packages the tests need, by the command that shows they are there.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}: install them (Debian: apt-get install ${missing[*]}) and run make test again" >&2
    exit 1
  fi
fi
command -v node >/dev/null 2>&1 || { echo "node is missing: install Node.js 20 and run make test again" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "npm is missing: install it with Node.js 20 and run make test again" >&2; exit 1; }

gobin="$(go env GOPATH)/bin"
want="0.8.2"
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "($want)"; then
  echo "installing staticcheck v$want"
  go install "honnef.co/go/tools/cmd/staticcheck@v$want"
fi

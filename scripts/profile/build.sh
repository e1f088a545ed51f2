#!/usr/bin/env bash
# Builds a profiling `switchboard` binary: the server's code unchanged, plus
# scripts/profile/debug.go.in added to package main through `go build
# -overlay` (a debug listener with pprof and runtime trace, and a 100 ms
# sampler of scheduling latencies and GC; see that file). Never ship it.
#
#   scripts/profile/build.sh /tmp/sb-prof
#   SWITCHBOARD_DEBUG_LISTEN=127.0.0.1:6061 SWITCHBOARD_DEBUG_SAMPLE=/tmp/s1.jsonl /tmp/sb-prof serve …
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: scripts/profile/build.sh OUTPUT}
overlay=$(mktemp /tmp/sb-overlay.XXXXXX.json)
trap 'rm -f "$overlay"' EXIT
printf '{"Replace":{"%s/cmd/switchboard/zz_debug_overlay.go":"%s/scripts/profile/debug.go.in"}}\n' "$PWD" "$PWD" >"$overlay"
go build -overlay "$overlay" -o "$out" ./cmd/switchboard

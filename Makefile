# Switchboard. `make run` starts a dev server; `make test` runs every check CI runs.

GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin
LISTEN      ?= :8080

.PHONY: run build test deps lint unit js demo browser bench bench-cluster bench-go chaos soak storm fuzz clean

## run: start one instance on the embedded broker in dev mode (http://localhost:8080)
run:
	$(GO) run ./cmd/switchboard serve --dev --listen $(LISTEN)

## build: build bin/switchboard (BIN=path to put it elsewhere): a static binary (no cgo, no dynamic
## loader), version stamped from `git describe --tags --always --dirty`, or "dev" outside a git
## checkout (VERSION=v1.2.3 to set it); `switchboard version` prints it
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     ?= bin/switchboard
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/switchboard-rt/switchboard.Version=$(VERSION)" -o $(BIN) ./cmd/switchboard

## test: install what the tests need, then gofmt, vet, staticcheck, every Go test with -race (Redis required),
## the TypeScript client's tests and the browser tests
test: deps lint unit js browser

## deps: install redis-server, nginx, Chromium and staticcheck when they are missing
deps:
	@scripts/install-test-deps.sh

## lint: gofmt, go vet and staticcheck must be clean, and the code must build for macOS and Windows too
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...
	$(GO) vet -tags soak ./cmd/switchboard/
	$(GOBIN)/staticcheck -tags soak ./cmd/switchboard/
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

## unit: every Go test with the race detector; tests that need redis-server fail instead of skipping.
## One package at a time (-p 1): the process and chaos tests load both cores, and timing-sensitive
## tests of other packages should not compete with them.
## The delivery, close and slow-reader tests run a second time over TLS (wss://), which takes the
## blocking-writer path of package transport instead of direct writes.
unit:
	SWITCHBOARD_TEST_IO_URING=required SWITCHBOARD_TEST_REDIS=required $(GO) test -race -count=1 -p 1 -timeout 20m ./...
	SWITCHBOARD_TEST_TLS=1 SWITCHBOARD_TEST_REDIS=required $(GO) test -race -count=1 -p 1 -timeout 10m \
	  -run '^(TestDelivery_|TestProtocol_Delivery|TestProtocol_CloseCodes|TestWire_|TestHub_)' . ./hub/

## js: the TypeScript client (clients/js): unit tests, end-to-end tests against switchboard and
## redis-server processes, and the check that the committed demo bundle is a fresh build
js:
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npm test

## demo: rebuild the demo page's bundle (internal/demo/static/app.js) after changing it or the client
demo:
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npm run build:demo

## browser: the demo page in Debian's Chromium, driven by playwright-core, behind nginx (deploy/nginx.conf)
## in front of two instances on one redis-server; screenshots land in test/browser/artifacts/
browser:
	cd test/browser && npm ci --no-audit --no-fund --loglevel=error && npm test

## bench: switchboard bench W1 idle, W2 fanout, W3 rooms on 2 instances + Redis; writes BENCHMARKS.md
## (CENTRIFUGO=/path/to/centrifugo adds the same workloads against 2 Centrifugo v6 nodes)
bench: deps
	scripts/bench-suite.sh

## bench-cluster: W3 and W2 on a Redis Cluster of 3 masters + 3 replicas with the commands each master
## served, W2 on one Redis beside it, and the delivery stall of a master kill and a Sentinel primary kill
## (prints Markdown; see scripts/bench-cluster.sh for the knobs)
bench-cluster: deps
	scripts/bench-cluster.sh

## bench-go: Go benchmarks of the hot paths (compare runs with benchstat)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## chaos: the zero-loss proof at full length (several minutes): Redis, three instances killed and restarted
## in turn under ~200 clients and steady publishing; prints its summary line. Without -race: the instances
## run without it anyway, and on a small machine it would slow the clients more than the chaos; the ~30 s
## version in `make unit` runs with -race. Run from the package directory so that the line is shown.
chaos:
	cd cmd/switchboard && SWITCHBOARD_CHAOS=full SWITCHBOARD_TEST_REDIS=required $(GO) test -count=1 -timeout 30m -run '^TestProcess_Chaos$$'

## soak: steady mixed load for SOAK_DURATION (10m) on 3 instances and one redis-server: Go clients publishing
## and sending direct messages (over WebSocket and the HTTP API), sessions joining, leaving and reconnecting;
## instance B is restarted with SIGTERM (drain) halfway. RSS, goroutines and open fds of each instance are
## sampled every 10 s; fails if a slope after the warm-up passes its bound (see process_soak_test.go) or a
## message is lost or duplicated. Ends with one summary line. Not part of `make test` (build tag soak).
SOAK_DURATION ?= 10m
soak: deps
	cd cmd/switchboard && SOAK_DURATION=$(SOAK_DURATION) SWITCHBOARD_TEST_REDIS=required $(GO) test -tags soak -count=1 \
	  -timeout 2h -run '^TestProcess_Soak$$'

## storm: the reconnect-storm measurement: SIGKILL an instance holding STORM_SESSIONS (2000) sessions in
## STORM_ROOMS (20) rooms; time until all are welcomed and recovered on the survivor (p50/p99/max and the
## last one), alone and with STORM_COLD (5000) cold sessions hammering the survivor at the same time.
## STORM_FLAGS adds flags to both instances (e.g. STORM_FLAGS="--accept-rate 500"); STORM_TIMEOUT (2m)
## bounds each scenario. One summary line per scenario. A tiny version runs in `make unit`.
storm: deps
	cd cmd/switchboard && SWITCHBOARD_STORM=full SWITCHBOARD_TEST_REDIS=required $(GO) test -count=1 -timeout 1h \
	  -run '^TestProcess_Storm$$'

## fuzz: run every fuzz target for FUZZTIME each (default 60s; go test -fuzz takes one target per
## run): the WebSocket frame reader, the client frame decoder, the room pattern matcher, the token
## verifier and the HTTP API's body decoders. Their seed corpora run in every `go test`.
FUZZTIME ?= 60s
FUZZ_TARGETS := \
	./transport:FuzzFrames \
	./protocol:FuzzDecode \
	./protocol:FuzzAppendString \
	./auth:FuzzMatch \
	./auth:FuzzVerify \
	./auth:FuzzVerifyString \
	./api:FuzzRequestBody
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t#*:}; \
	  echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

clean:
	rm -rf bin

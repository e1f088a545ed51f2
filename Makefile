# Switchboard. `make run` starts a dev server; `make test` runs every check CI runs.

GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin
LISTEN      ?= :8080

.PHONY: run build test deps lint unit browser bench fuzz clean

## run: start one instance on the embedded broker in dev mode (http://localhost:8080)
run:
	$(GO) run ./cmd/switchboard serve --dev --listen $(LISTEN)

## build: build bin/switchboard
build:
	$(GO) build -o bin/switchboard ./cmd/switchboard

## test: install what the tests need, then gofmt, vet, staticcheck, every Go test with -race (Redis required) and the browser tests
test: deps lint unit browser

## deps: install redis-server, Chromium and staticcheck when they are missing
deps:
	@scripts/install-test-deps.sh

## lint: gofmt, go vet and staticcheck must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

## unit: every Go test with the race detector; tests that need redis-server fail instead of skipping
unit:
	SWITCHBOARD_TEST_REDIS=required $(GO) test -race -count=1 -timeout 20m ./...

## browser: the demo page in Debian's Chromium, driven by playwright-core
browser:
	cd test/browser && npm ci --no-audit --no-fund --loglevel=error && npm test

## bench: Go benchmarks of the hot paths
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: run the frame decoder fuzzer for a minute
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 60s ./protocol

clean:
	rm -rf bin

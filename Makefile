# The index of what a developer does with sonde. Start with `make build` and
# `make test` (as root, so the privileged namespace tests run too).

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/sonde
# go test's own limit; the whole suite, privileged tests included, takes minutes.
TEST_TIMEOUT ?= 30m
FUZZTIME ?= 30s
PKGS     := ./...

.PHONY: build build-libpcap run test generate-check bench fuzz generate lint clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sonde

run: build
	./$(BIN) run --data-dir ./data $(ARGS)

# Privileged tests (network namespaces) run when this is root and skip
# otherwise; with CI=true they fail instead of skipping.
test:
	$(GO) vet $(PKGS)
	$(GO) vet -tags libpcap $(PKGS)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	# The optional libpcap engine (cgo): what the tag changes, built and tested.
	$(GO) test -race -count=1 -tags libpcap -timeout $(TEST_TIMEOUT) ./capture/ ./cmd/sonde/

# The static default binary, and the optional libpcap build (cgo).
build-libpcap:
	CGO_ENABLED=1 $(GO) build -tags libpcap -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sonde

# Micro-benchmarks, then the live comparison with tcpdump (root, trafgen).
bench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list $(PKGS) | grep -v '/capture$$')
	$(GO) test -run '^$$' -bench WalkBlock -benchmem ./capture
	$(GO) test -run '^$$' -bench RingRead -benchtime 1000000x -benchmem ./capture
	$(GO) run ./internal/livebench $(BENCH_ARGS)

# Runs every FuzzXxx target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
		for target in $$($(GO) test -list 'Fuzz.*' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

generate:
	$(GO) generate $(PKGS)

# CI: regenerating (clang, bpf2go) must reproduce the committed objects.
generate-check: generate
	git diff --exit-code -- bpf/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
	$(GO) clean -testcache

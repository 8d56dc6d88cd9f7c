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

.PHONY: build build-libpcap run test generate-check soak bench fuzz generate lint clean

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
	# The optional libpcap engine (cgo): what the tag changes, built and tested
	# (the pcap engine's live tests and the CLI's --engine handling).
	$(GO) test -race -count=1 -tags libpcap -timeout $(TEST_TIMEOUT) -run 'Pcap|CLI' ./capture/ ./cmd/sonde/

# The static default binary, and the optional libpcap build (cgo).
build-libpcap:
	CGO_ENABLED=1 $(GO) build -tags libpcap -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sonde

# Micro-benchmarks, then the live comparison with tcpdump (root, trafgen).
bench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list $(PKGS) | grep -v -e '/capture$$' -e '/internal/fleet$$' -e '/internal/offload$$')
	# Fleet merge pinned to one core (issue #8: at least 500 MB/s merged),
	# and mergecap merging the same streams, in the same run.
	$$(command -v taskset >/dev/null && echo taskset -c 0) $(GO) test -run '^$$' -bench 'Merge' -cpu 1 -benchmem ./internal/fleet
	# Upload of a 64 MiB ring file to a local MinIO (built by .ci/run), plain
	# and zstd, with minio-go's own PutObject of the same bytes in the same run.
	$(GO) test -run '^$$' -bench Upload -benchtime 5x -count 2 ./internal/offload
	$(GO) test -run '^$$' -bench WalkBlock -benchmem ./capture
	$(GO) test -run '^$$' -bench RingRead -benchtime 1000000x -benchmem ./capture
	$(GO) run ./internal/livebench $(BENCH_ARGS)
	# Offline analysis of a 3-million-packet capture vs tshark and tcpdump.
	$(GO) run ./internal/offlinebench

# Soak: many flows through the real daemon for DURATION (root, trafgen; the
# first half is warm-up);
# memory, goroutines, drops and the ring bound are checked. RATE=max for
# trafgen's full speed.
DURATION ?= 10m
RATE     ?= 50000pps
soak:
	SONDE_SOAK_DURATION=$(DURATION) SONDE_SOAK_RATE=$(RATE) $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 0 ./internal/e2e/

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

# The container image, one `docker build` per platform (BuildKit; the
# builder stage cross-compiles, so no emulation is needed). Tags
# IMAGE-ARCH per platform, and IMAGE itself for the first one. With buildx
# present, `docker buildx build --platform linux/amd64,linux/arm64` builds
# the same Dockerfile as one multi-arch image.
IMAGE         ?= sonde:$(VERSION)
PLATFORMS     ?= linux/amd64 linux/arm64
DOCKER        ?= $(shell command -v /usr/bin/docker || command -v docker)
GO_IMAGE      ?=
RUNTIME_IMAGE ?=
IMAGE_ARGS     = --build-arg VERSION=$(VERSION) \
	$(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) \
	$(if $(RUNTIME_IMAGE),--build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE))

.PHONY: image
image:
	@set -e; first=1; for p in $(PLATFORMS); do \
		arch=$${p#*/}; \
		echo "== image $(IMAGE)-$$arch ($$p)"; \
		DOCKER_BUILDKIT=1 $(DOCKER) build --network host --platform $$p $(IMAGE_ARGS) -t $(IMAGE)-$$arch .; \
		if [ $$first = 1 ]; then $(DOCKER) tag $(IMAGE)-$$arch $(IMAGE); first=0; fi; \
		$(DOCKER) image inspect -f "$(IMAGE)-$$arch: {{.Size}} bytes {{.Os}}/{{.Architecture}}" $(IMAGE)-$$arch; \
	done

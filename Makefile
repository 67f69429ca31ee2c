# pqedge: `make run` serves the example on https://localhost:8443,
# `make test` runs every test whose peers are present.

# go.mod pins Go 1.27; these machines default to GOTOOLCHAIN=local, so let
# the go command fetch the pinned toolchain through the module proxy.
export GOTOOLCHAIN := auto

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/pqedge

.PHONY: all build run test vet unit fuzz-smoke bench peers compat image clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pqedge

run: build
	$(BIN) run -config config.example.toml

# image first: internal/image's test cross-compiles pqedge for seven
# platforms, which from a cold build cache takes longer than a test may;
# after `make image` it only relinks.
test: vet image unit fuzz-smoke

# The binary also builds for macOS and Windows (`pqedge bench handshake`
# against a remote server, `pqedge certs`); the proxy itself is tested on
# Linux only.
vet:
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...
	GOOS=windows $(GO) build ./...

# The race detector needs cgo; the shipped binary does not. testsummary
# prints what plain go test would, then every skipped test with its reason
# (a machine without peers must not look all green), and exits with go
# test's status.
unit:
	CGO_ENABLED=1 $(GO) run ./scripts/testsummary -trim github.com/pqedge/pqedge/ \
		$(GO) test -json -race -timeout 20m ./...

# A few seconds of each fuzzer on top of its seed corpus, so a parser
# regression on odd input fails `make test`, not a production handshake.
fuzz-smoke:
	@for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime 5s $$pkg || exit 1; \
		done; \
	done

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./pqtls/... ./certs/... ./proxy/... ./internal/server/...
	$(BIN) bench matrix -runs 2 -duration 2s -groups X25519MLKEM768,x25519 -certs ecdsa-p256,mldsa44-circl,mldsa65-circl -out bench-out
	$(BIN) bench proxy -runs 2 -duration 2s -idle-conns 1000 -out bench-out

# The client compatibility suite (real browsers, curl, openssl s_client; see
# internal/compat): fails when a peer is missing, and rewrites docs/COMPAT.md
# and docs/compat.json. `make test` runs it too (inside `unit`), skipping
# when peers are absent.
compat:
	PQEDGE_REQUIRE_PEERS=1 $(GO) test -count=1 -timeout 15m -run '^TestCompat$$' ./internal/compat -update

# The container image (internal/image, docs/OPERATIONS.md): pqedge for seven
# platforms, built without Docker, into $(IMAGE_DIR)/oci (OCI layout, the
# multi-arch index) and $(IMAGE_DIR)/pqedge.tar (docker load, this machine's
# platform). Timestamps are the last commit's, so digests are reproducible.
IMAGE_DIR    ?= bin/image
IMAGE_SOURCE ?= https://github.com/pqedge/pqedge

image:
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
	$(GO) run ./internal/image/mkimage -out $(IMAGE_DIR) -version $(VERSION) \
		-revision="$$(git rev-parse HEAD 2>/dev/null)" -source=$(IMAGE_SOURCE)

# Installs the real peers the tests run against (needs root).
peers:
	bash scripts/peers

clean:
	rm -rf bin

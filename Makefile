# jumpgate — build, test, demo and benchmark.
# `make test` installs the system packages the tests drive (real sshd, psql,
# PostgreSQL, asciinema, headless chromium, kubectl) when they are missing; run it as root or with sudo.

GO        ?= go
BIN       := bin/jumpgate
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
APT_PKGS  := openssh-server openssh-client openssh-sftp-server postgresql postgresql-contrib asciinema rsync chromium
TEST_FLAGS ?= -count=1 -timeout 20m
FUZZTIME  ?= 20s
# Minimizing a new interesting input tries every deletion (quadratic in its
# length); bound it so that a slow target keeps fuzzing instead of stalling.
FUZZMINTIME ?= 10s

.PHONY: all build test unit e2e demo bench lint fuzz deps clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/jumpgate

## deps: install the programs the tests drive (Debian/Ubuntu).
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@command -v kubectl >/dev/null 2>&1 || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq kubernetes-client; }
	@mkdir -p /run/sshd 2>/dev/null || true

## test: unit and end-to-end tests (fuzz corpora replayed as unit tests).
test: deps build
	$(GO) vet ./...
	# Build (or find cached) the real kube-apiserver once, before the
	# packages that start it run in parallel.
	$(GO) test -count=1 -timeout 30m -run '^TestBinary$$' ./testutil/kubetest
	$(GO) test $(TEST_FLAGS) ./...

unit:
	$(GO) test -count=1 -short ./...

demo: build
	./$(BIN) dev

## bench: benchmarks against their references, ratios printed (see bench/).
bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 2x ./ca/ ./recorder/ ./termline/
	@if [ -d bench ]; then $(GO) run ./bench; fi

lint:
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin .jumpgate-dev

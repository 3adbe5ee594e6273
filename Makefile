# cgsem — see README.md. Kernel tests need root; they create groups only
# beneath the test process's own cgroup and remove them.

SHELL     := /bin/bash
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 20000x
VM_PKGS   ?= ./test/vm/probe ./drivers/v2/...
# The systemd lane runs the systemd driver's tests (its conformance suite
# against the VM's own systemd as PID 1, in unified mode: 3-8 minutes under
# TCG), so its limits are wider than the lane's defaults.
VM_SYSTEMD_PKGS ?= ./test/vm/sdprobe ./drivers/systemd
VM_SYSTEMD_LIMITS ?= CGSEM_VM_TEST_TIMEOUT=30m CGSEM_VM_TIMEOUT=2700
GOFLAGS_TEST ?= -race -count=1

.PHONY: all build test test-vm test-vm-v2 test-vm-systemd test-all lint fmt vet depcheck bench fuzz cover clean

all: build

build:
	$(GO) build $(PKGS)
	$(GO) build -o bin/cgsem ./cmd/cgsem

## test: everything this machine can run (unit, root and kernel tests), race detector on.
test:
	@set -o pipefail; $(GO) test $(GOFLAGS_TEST) -json $(PKGS) | $(GO) run ./test/testsum -label host

## test-vm: the VM lanes (pure cgroup v2 kernel under qemu: with a Go /init,
## and with systemd as PID 1 on a debootstrap'd root); install what they need.
test-vm: test-vm-v2 test-vm-systemd

test-vm-v2:
	test/vm/lane.sh $(VM_PKGS)

test-vm-systemd:
	$(VM_SYSTEMD_LIMITS) test/vm/lane.sh --systemd $(VM_SYSTEMD_PKGS)

## test-all: the whole suite, as CI runs it.
# -k: a failing lane does not stop the others, so one run shows every
# failure; the exit status is still nonzero if any failed.
test-all:
	@$(MAKE) --no-print-directory -k lint test fuzz test-vm

lint: fmt vet depcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

depcheck:
	$(GO) test -count=1 ./internal/depcheck

## fuzz: a short run of every fuzz target; a count (Nx), not a duration: duration
## runs hit Go 1.26's coordinator race golang/go#75804 ("context deadline exceeded").
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

## bench: cgsem against the raw floor and the peers (root); writes bench/RESULTS.md.
bench:
	cd bench && $(GO) run . $(BENCHFLAGS)

cover:
	$(GO) test -count=1 -coverprofile=cover.out $(PKGS)
	$(GO) tool cover -func=cover.out | tail -1

clean:
	rm -rf bin cover.out

# OTE build. `make help` lists the targets.

GO       ?= go
HOSTARCH := $(shell $(GO) env GOARCH)
ARCH     ?= $(HOSTARCH)
# staticcheck is pinned here and run through `go run`, so it needs no
# install step and stays out of go.mod.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

include cross/cross.mk

.DEFAULT_GOAL := build

.PHONY: help build cross kube test test-short lint deps run clean

help:
	@echo "make build       host binaries into out/$(HOSTARCH)/"
	@echo "make cross       every binary for every target arch into out/<arch>/"
	@echo "make kube        upstream Kubernetes multi-call binary (ARCH=amd64|arm64)"
	@echo "make run         build and run OTE locally (see README)"
	@echo "make test        lint, unit, integration and VM tests (installs deps)"
	@echo "make test-short  go test -short ./..."
	@echo "make lint        gofmt, go vet, staticcheck"
	@echo "make deps        install missing Debian packages"
	@echo "make clean       remove out/"

build: out/$(HOSTARCH)/ote out/$(HOSTARCH)/ote-cloud out/$(HOSTARCH)/ote-image

cross: $(CROSS_OUTPUTS)

kube: out/$(ARCH)/kube

deps:
	@bash cross/deps.sh

# The end-to-end tests drive the binaries in out/$(HOSTARCH)/.
test: deps lint build kube
	OTE_OUT=$(abspath out/$(HOSTARCH)) $(GO) test -count=1 -timeout 60m ./...

test-short:
	$(GO) test -short ./...

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './out/*')); \
	if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	cd cross/kube && $(GO) vet .
	$(GO) run $(STATICCHECK) ./...

run: build
	@echo "OTE binaries built in out/$(HOSTARCH)/:"
	@for b in ote ote-cloud ote-image; do out/$(HOSTARCH)/$$b version; done
	@echo
	@echo "Nothing runs yet: the cloud controller (ote-cloud serve) and a QEMU box"
	@echo "are not built. Until then 'make run' only builds and reports versions."

clean:
	rm -rf out

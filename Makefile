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

# Until the cloud controller and the QEMU box exist, `make run` runs the
# appliance runtime as an ordinary process, its files under out/run/box.
RUN_STATUS ?= 127.0.0.1:8080
run: build
	@echo "Starting the OTE appliance runtime (ote init) with its files in out/run/box."
	@echo "Status page: http://$(RUN_STATUS)/   JSON: http://$(RUN_STATUS)/api/v1/status"
	@echo "Device config: out/run/box/boot/ote/config.yaml.  Stop with Ctrl-C."
	@mkdir -p out/run/box
	out/$(HOSTARCH)/ote init --root out/run/box --status-listen $(RUN_STATUS)

clean:
	rm -rf out

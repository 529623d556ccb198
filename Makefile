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

# `make run`: the cloud controller (embedded control plane under
# out/run/cloud) and, beside it, the box runtime as an ordinary process
# (files under out/run/box). Ctrl-C stops both.
RUN_STATUS ?= 127.0.0.1:8080
RUN_API    ?= 127.0.0.1:6443
run: build kube
	@mkdir -p out/run/cloud out/run/box
	@echo "Cloud controller: kubectl --kubeconfig out/run/cloud/kubeconfig get edgeclusters"
	@echo "                  (kubectl is out/$(HOSTARCH)/kubectl)"
	@echo "Box status page:  http://$(RUN_STATUS)/   JSON: http://$(RUN_STATUS)/api/v1/status"
	@echo "Box config:       out/run/box/boot/ote/config.yaml.  Stop with Ctrl-C."
	@bash -c 'out/$(HOSTARCH)/ote-cloud serve --data-dir out/run/cloud --api-listen $(RUN_API) & \
		cloud=$$!; trap "kill $$cloud 2>/dev/null; wait $$cloud" EXIT; \
		out/$(HOSTARCH)/ote init --root out/run/box --status-listen $(RUN_STATUS)'

clean:
	rm -rf out

# OTE build. `make help` lists the targets.

GO       ?= go
HOSTARCH := $(shell $(GO) env GOARCH)
ARCH     ?= $(HOSTARCH)
# staticcheck is pinned here and run through `go run`, so it needs no
# install step and stays out of go.mod.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

include cross/cross.mk

.DEFAULT_GOAL := build

.PHONY: help build cross kube image qemu lock test test-short lint deps run clean

help:
	@echo "make build       host binaries into out/$(HOSTARCH)/"
	@echo "make cross       every binary for every target arch into out/<arch>/"
	@echo "make kube        upstream Kubernetes multi-call binary (ARCH=amd64|arm64)"
	@echo "make image       a board's disk image: out/images/BOARD.img (BOARD=$(BOARD))"
	@echo "make qemu        boot that image in QEMU, status page on http://$(QEMU_STATUS)/"
	@echo "make lock        pin the boards' Debian packages at the mirror's current versions"
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

# Images: `make image BOARD=qemu-arm64`. The box binaries for both image
# arches are built, whichever the board's is.
BOARD       ?= qemu-$(HOSTARCH)
QEMU_STATUS ?= 127.0.0.1:8080
IMAGE_BINS  := out/$(HOSTARCH)/ote-image $(foreach a,$(IMAGE_ARCHES),out/$(a)/ote out/$(a)/ote-initrd)
image: deps $(IMAGE_BINS)
	out/$(HOSTARCH)/ote-image build --board $(BOARD) --out out/images/$(BOARD).img $(if $(ENROLL),--enroll $(ENROLL)) $(if $(CONFIG),--config $(CONFIG))

qemu: image
	out/$(HOSTARCH)/ote-image qemu --status $(QEMU_STATUS) out/images/$(BOARD).img $(BOARD)

lock: deps out/$(HOSTARCH)/ote-image
	out/$(HOSTARCH)/ote-image lock --out rootfs/packages.lock

# The end-to-end tests drive the binaries in out/$(HOSTARCH)/.
test: deps lint build kube $(IMAGE_BINS)
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
# out/run/cloud) and a box: an image for the host's arch with a token for
# that controller, booted in QEMU. See cross/run.sh. Ctrl-C stops both.
RUN_STATUS ?= 127.0.0.1:8080
RUN_API    ?= 127.0.0.1:6443
run: deps build kube $(IMAGE_BINS)
	@bash cross/run.sh $(HOSTARCH) $(RUN_API) $(RUN_STATUS)

clean:
	rm -rf out

# Cross-build rules: the target matrix and how each binary is built.
# Included by the top-level Makefile.

# The box binary runs on every board; the cloud side and the upstream
# Kubernetes components only on 64-bit machines.
OTE_ARCHES  := amd64 arm64 arm
CLOUD_ARCHES := amd64 arm64
KUBE_ARCHES := amd64 arm64
# Images exist for 64-bit boards; ote-initrd is the init of their initramfs.
IMAGE_ARCHES := amd64 arm64

# GOARM for 32-bit ARM boards: ARMv7 with VFPv3 (Raspberry Pi 2 and later).
GOARM_arm := 7

KUBE_VERSION := v1.36.3
KUBE_MAJOR   := 1
KUBE_MINOR   := 36
# Symlinks next to kube: invoking kube under an upstream name runs that component.
KUBE_LINKS   := kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

GO_BUILD = CGO_ENABLED=0 GOOS=linux GOARCH=$(1) GOARM=$(GOARM_$(1)) $(GO) build -trimpath

OTE_LDFLAGS := -s -w \
	-X github.com/ote-edge/ote/cross/buildinfo.version=$(VERSION) \
	-X github.com/ote-edge/ote/cross/buildinfo.commit=$(COMMIT)

# Upstream's hack/lib/version.sh stamps both packages; kubectl version
# reads client-go's, the servers read component-base's. buildDate is fixed
# so that the same sources give the same binary.
KUBE_VERSION_PKGS := k8s.io/client-go/pkg/version k8s.io/component-base/version
KUBE_LDFLAGS := -s -w $(foreach p,$(KUBE_VERSION_PKGS), \
	-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=$(KUBE_MAJOR) \
	-X $(p).gitMinor=$(KUBE_MINOR) -X $(p).gitTreeState=clean \
	-X $(p).buildDate=1970-01-01T00:00:00Z)

KUBE_SRC := $(wildcard cross/kube/*.go) cross/kube/go.mod cross/kube/go.sum

# ote_binary ARCH NAME PKG: our own binaries are always handed to go build,
# whose cache makes an unchanged rebuild take about a second.
define ote_binary
out/$(1)/$(2): FORCE
	$$(call GO_BUILD,$(1)) -ldflags '$$(OTE_LDFLAGS)' -o $$@ ./$(3)
endef

# kube_binary ARCH: kube is only relinked when its sources change; linking
# it costs tens of seconds.
define kube_binary
out/$(1)/kube: $$(KUBE_SRC) cross/cross.mk
	cd cross/kube && $$(call GO_BUILD,$(1)) -ldflags '$$(KUBE_LDFLAGS)' -o $$(abspath $$@) .
	cd out/$(1) && for l in $$(KUBE_LINKS); do ln -sfn kube $$$$l; done
endef

$(foreach a,$(OTE_ARCHES),$(eval $(call ote_binary,$(a),ote,appliance/cmd/ote)))
$(foreach a,$(CLOUD_ARCHES),$(eval $(call ote_binary,$(a),ote-cloud,cloud/cmd/ote-cloud)))
$(foreach a,$(CLOUD_ARCHES),$(eval $(call ote_binary,$(a),ote-image,image/cmd/ote-image)))
$(foreach a,$(IMAGE_ARCHES),$(eval $(call ote_binary,$(a),ote-initrd,rootfs/cmd/ote-initrd)))
$(foreach a,$(KUBE_ARCHES),$(eval $(call kube_binary,$(a))))

CROSS_OUTPUTS := $(foreach a,$(OTE_ARCHES),out/$(a)/ote) \
	$(foreach a,$(CLOUD_ARCHES),out/$(a)/ote-cloud out/$(a)/ote-image) \
	$(foreach a,$(IMAGE_ARCHES),out/$(a)/ote-initrd) \
	$(foreach a,$(KUBE_ARCHES),out/$(a)/kube)

.PHONY: FORCE
FORCE:

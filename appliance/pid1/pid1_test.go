package pid1

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReadModuleList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "modules")
	os.WriteFile(p, []byte("# boot modules\n/lib/modules/6.1/virtio.ko\n\n  /lib/modules/6.1/virtio_net.ko # net\n"), 0o644)
	got, err := ReadModuleList(p)
	want := []string{"/lib/modules/6.1/virtio.ko", "/lib/modules/6.1/virtio_net.ko"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ReadModuleList = %q, %v; want %q", got, err, want)
	}
	if got, err := ReadModuleList(filepath.Join(t.TempDir(), "none")); err != nil || got != nil {
		t.Errorf("ReadModuleList(missing) = %q, %v; want nothing", got, err)
	}
}

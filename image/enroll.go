package image

import (
	"context"
	"fmt"
	"os"

	"github.com/ote-edge/ote/appliance/config"
)

// enrollPath is where the box reads enroll.yaml, in the boot partition.
const enrollPath = "ote/enroll.yaml"

// Enroll replaces ote/enroll.yaml in the boot partition of the image img,
// in place: nothing is rebuilt or mounted, and no byte outside the boot
// partition changes. enrollYAML is checked with config.ParseEnroll first;
// if it is not valid the image is not touched. The image's .bmap and
// .zst, where they exist, are written again to match it.
func Enroll(ctx context.Context, img string, enrollYAML []byte) error {
	if err := enroll(ctx, img, enrollYAML); err != nil {
		return fmt.Errorf("enroll image %s: %w", img, err)
	}
	if err := refreshCompanions(ctx, img); err != nil {
		return fmt.Errorf("enroll image %s: %w", img, err)
	}
	return nil
}

func enroll(ctx context.Context, img string, enrollYAML []byte) error {
	if _, err := config.ParseEnroll("enroll.yaml", enrollYAML); err != nil {
		return fmt.Errorf("image left unchanged, the new enroll.yaml is not valid: %w", err)
	}
	if err := needTools("mdir", "mmd", "mcopy"); err != nil {
		return err
	}
	fat, err := bootFAT(img)
	if err != nil {
		return err
	}
	src, err := os.CreateTemp("", "ote-enroll-*.yaml")
	if err != nil {
		return err
	}
	src.Close()
	defer os.Remove(src.Name())
	if err := writeFixedTime(src.Name(), enrollYAML); err != nil {
		return err
	}
	if run(ctx, nil, "mdir", "-b", "-i", fat, "::ote") != nil {
		if err := run(ctx, nil, "mmd", "-i", fat, "::ote"); err != nil {
			return fmt.Errorf("%s partition: %w", BootName, err)
		}
	}
	if err := run(ctx, nil, "mcopy", "-o", "-m", "-i", fat, src.Name(), "::"+enrollPath); err != nil {
		return fmt.Errorf("%s partition: %w", BootName, err)
	}
	return nil
}

// findPartition returns the partition of img named name.
func findPartition(img, name string) (Partition, error) {
	parts, err := ReadPartitions(img)
	if err != nil {
		return Partition{}, err
	}
	for _, p := range parts {
		if p.Name == name {
			return p, nil
		}
	}
	return Partition{}, fmt.Errorf("no %s partition: the image has %d partitions, none named %s", name, len(parts), name)
}

package initrd

import "unsafe"

// unsafePointer passes a pointer to an ioctl.
func unsafePointer(p *uint64) unsafe.Pointer { return unsafe.Pointer(p) }

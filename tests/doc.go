// Package tests holds OTE's end-to-end tests: the project's conventions
// checked over the whole tree, the built binaries driven as a user would,
// and (as they arrive) multi-level trees on loopback and QEMU boots of
// built images.
//
// Tests that need built binaries look for them in $OTE_OUT (set by
// `make test`) or out/<GOARCH>/ at the repository root.
package tests

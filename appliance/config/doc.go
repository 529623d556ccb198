// Package config reads the two files a user may drop on a box's boot
// partition: ote/config.yaml (hostname, network, status page, device
// password, per-service overrides) and ote/enroll.yaml (where and how the
// box joins its parent).
//
// Parsing is strict: an unknown key, a wrong type or a bad value yields
// one *Error naming the file, line and key. A box never refuses to boot
// over its configuration: Load returns safe defaults with the error, and
// the caller shows the error on the console and the status page.
package config

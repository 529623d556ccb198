package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Enroll is ote/enroll.yaml: how the box joins its parent. ote-cloud
// token create --enroll-yaml writes it.
type Enroll struct {
	Server string            `yaml:"server"` // HOST:PORT of the parent's QUIC listener
	Token  string            `yaml:"token"`
	Name   string            `yaml:"name"` // desired cluster name; default from the token's prefix and the device id
	Tags   map[string]string `yaml:"tags"`
	// Alternates are other parents to try when Server is unreachable.
	Alternates []string `yaml:"alternates"`
}

// ErrNoEnroll is returned by LoadEnroll when the box has no enroll.yaml.
var ErrNoEnroll = errors.New("no enroll.yaml")

// LoadEnroll reads enroll.yaml at path.
func LoadEnroll(path string) (Enroll, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Enroll{}, fmt.Errorf("%s: %w", path, ErrNoEnroll)
	}
	if err != nil {
		return Enroll{}, &Error{File: path, Msg: err.Error()}
	}
	return ParseEnroll(path, data)
}

var (
	tagKeyRe  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`)
	tagValRe  = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$`)
	clusterRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
)

// ParseEnroll parses and validates the contents of enroll.yaml.
func ParseEnroll(file string, data []byte) (Enroll, error) {
	var e Enroll
	root, err := decodeStrict(file, data, &e)
	if err != nil {
		return Enroll{}, err
	}
	bad := func(msg string, path ...string) error {
		return &Error{File: file, Line: lineOf(root, path...), Key: strings.Join(path, "."), Msg: msg}
	}
	if e.Server == "" {
		return Enroll{}, bad("missing: the parent's HOST:PORT", "server")
	}
	for i, s := range append([]string{e.Server}, e.Alternates...) {
		if _, _, err := splitListen(s); err != nil || strings.HasPrefix(s, ":") {
			if i == 0 {
				return Enroll{}, bad(fmt.Sprintf("want HOST:PORT, got %q", s), "server")
			}
			return Enroll{}, bad(fmt.Sprintf("want HOST:PORT, got %q", s), "alternates")
		}
	}
	if e.Token == "" {
		return Enroll{}, bad("missing: the enrollment token from ote-cloud token create", "token")
	}
	if e.Name != "" && !clusterRe.MatchString(e.Name) {
		return Enroll{}, bad(fmt.Sprintf("%q is not a cluster name: use lowercase letters, digits, dots and dashes", e.Name), "name")
	}
	keys := make([]string, 0, len(e.Tags))
	for k := range e.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !tagKeyRe.MatchString(k) || !tagValRe.MatchString(e.Tags[k]) {
			return Enroll{}, bad(fmt.Sprintf("bad tag %s=%s: use letters, digits, '.', '_', '-' (and '/' in keys)", k, e.Tags[k]), "tags", k)
		}
	}
	return e, nil
}

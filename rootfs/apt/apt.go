// Package apt fetches Debian packages for any architecture through a
// private APT root: a directory with its own apt.conf, sources, package
// lists and download cache, driven by the host's apt-get through
// APT_CONFIG. The host's dpkg database and apt setup are never touched,
// and no foreign architecture is added to the host.
package apt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultSources are Debian 12's main and firmware archives.
func DefaultSources() []string {
	return []string{
		"deb http://deb.debian.org/debian bookworm main non-free-firmware",
		"deb http://deb.debian.org/debian bookworm-updates main non-free-firmware",
		"deb http://deb.debian.org/debian-security bookworm-security main non-free-firmware",
	}
}

// Keyring is the Debian archive keyring the sources are verified with.
const Keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Root is a private APT root for one architecture.
type Root struct {
	Dir     string   // the root's directory; created as needed
	Arch    string   // Debian architecture: amd64, arm64
	Sources []string // deb lines; default DefaultSources()
	// Progress, if set, receives apt-get's progress output.
	Progress io.Writer
}

func (r *Root) conf() string { return filepath.Join(r.Dir, "etc", "apt", "apt.conf") }

// setup writes the root's configuration.
func (r *Root) setup() error {
	if r.Arch == "" || strings.ContainsAny(r.Arch, " \";") {
		return fmt.Errorf("apt: bad architecture %q", r.Arch)
	}
	dir, err := filepath.Abs(r.Dir)
	if err != nil {
		return err
	}
	r.Dir = dir
	for _, d := range []string{"etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg", "debs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	status := filepath.Join(dir, "var/lib/dpkg/status")
	if _, err := os.Stat(status); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(status, nil, 0o644); err != nil {
			return err
		}
	}
	sources := r.Sources
	if len(sources) == 0 {
		sources = DefaultSources()
	}
	var list strings.Builder
	for _, s := range sources {
		fields := strings.Fields(s)
		if len(fields) < 4 || fields[0] != "deb" {
			return fmt.Errorf("apt: bad source %q: want \"deb URI SUITE COMPONENT [COMPONENT]\"", s)
		}
		fmt.Fprintf(&list, "deb [arch=%s signed-by=%s] %s\n", r.Arch, Keyring, strings.Join(fields[1:], " "))
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/apt/sources.list"), []byte(list.String()), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`Dir "%[1]s/";
Dir::State "var/lib/apt/";
Dir::State::status "%[1]s/var/lib/dpkg/status";
Dir::Cache "var/cache/apt/";
Dir::Etc "etc/apt/";
Dir::Etc::SourceList "%[1]s/etc/apt/sources.list";
Dir::Etc::SourceParts "%[1]s/etc/apt/sources.list.d";
Dir::Etc::Parts "%[1]s/etc/apt/apt.conf.d";
Dir::Etc::Preferences "%[1]s/etc/apt/preferences";
Dir::Etc::PreferencesParts "%[1]s/etc/apt/preferences.d";
APT::Architecture "%[2]s";
APT::Architectures { "%[2]s"; };
Acquire::Languages "none";
Acquire::Retries "3";
APT::Sandbox::User "root";
`, dir, r.Arch)
	return os.WriteFile(r.conf(), []byte(conf), 0o644)
}

// apt runs an apt tool against the root.
func (r *Root) apt(ctx context.Context, dir string, progress bool, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "APT_CONFIG="+r.conf(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if progress && r.Progress != nil {
		cmd.Stdout = io.MultiWriter(&out, r.Progress)
	}
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(args[:2], " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// Update fetches the package lists.
func (r *Root) Update(ctx context.Context) error {
	if err := r.setup(); err != nil {
		return err
	}
	_, err := r.apt(ctx, r.Dir, true, "apt-get", "update", "-q")
	return err
}

// Package is one exact package version.
type Package struct {
	Name    string
	Version string
	Arch    string // the package's own: the root's, or all
	SHA256  string // of the .deb
}

func (p Package) String() string { return p.Name + "=" + p.Version }

var (
	nameRe      = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	candidateRe = regexp.MustCompile(`(?m)^\s*Candidate:\s*(\S+)`) // in apt-cache policy
)

// Resolve finds the version the lists offer for each name, following a
// metapackage (such as linux-image-cloud-amd64) to the one package it
// depends on whose name starts like it (linux-image-6.1.0-…-cloud-amd64)
// when follow says so for that name.
func (r *Root) Resolve(ctx context.Context, names []string, follow func(name string) bool) ([]Package, error) {
	if err := r.setup(); err != nil {
		return nil, err
	}
	var out []Package
	for _, name := range names {
		if !nameRe.MatchString(name) {
			return nil, fmt.Errorf("apt: %q is not a package name", name)
		}
		p, deps, err := r.show(ctx, name)
		if err != nil {
			return nil, err
		}
		if follow != nil && follow(name) {
			var inner string
			prefix := strings.SplitN(name, "-", 3)
			for _, d := range deps {
				if len(prefix) >= 2 && strings.HasPrefix(d, prefix[0]+"-"+prefix[1]+"-") && d != name {
					inner = d
					break
				}
			}
			if inner == "" {
				return nil, fmt.Errorf("apt: %s depends on no %s-%s-* package to follow", name, prefix[0], prefix[1])
			}
			if p, _, err = r.show(ctx, inner); err != nil {
				return nil, err
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// show reads a package's candidate version, checksum and dependencies.
func (r *Root) show(ctx context.Context, name string) (Package, []string, error) {
	policy, err := r.apt(ctx, r.Dir, false, "apt-cache", "policy", name)
	if err != nil {
		return Package{}, nil, err
	}
	m := candidateRe.FindSubmatch(policy)
	if m == nil || string(m[1]) == "(none)" {
		return Package{}, nil, fmt.Errorf("apt: no package %s for %s in the lists (run an update?)", name, r.Arch)
	}
	version := string(m[1])
	show, err := r.apt(ctx, r.Dir, false, "apt-cache", "show", name+"="+version)
	if err != nil {
		return Package{}, nil, err
	}
	record, _, _ := bytes.Cut(show, []byte("\n\n"))
	p := Package{Name: name, Version: version}
	var deps []string
	for _, line := range strings.Split(string(record), "\n") {
		switch {
		case strings.HasPrefix(line, "Architecture: "):
			p.Arch = strings.TrimSpace(strings.TrimPrefix(line, "Architecture: "))
		case strings.HasPrefix(line, "SHA256: "):
			p.SHA256 = strings.TrimSpace(strings.TrimPrefix(line, "SHA256: "))
		case strings.HasPrefix(line, "Depends: "):
			for _, d := range strings.Split(strings.TrimPrefix(line, "Depends: "), ",") {
				d = strings.TrimSpace(d)
				d, _, _ = strings.Cut(d, " ")
				d, _, _ = strings.Cut(d, "|")
				deps = append(deps, d)
			}
		}
	}
	if p.SHA256 == "" || p.Arch == "" {
		return Package{}, nil, fmt.Errorf("apt: %s has no SHA256 or Architecture in the lists", p)
	}
	return p, deps, nil
}

// Download fetches the exact packages into the root's cache (once) and
// returns the .deb paths, in order. Each file is checked against its
// SHA256. A version the mirror no longer has is an error that says so.
func (r *Root) Download(ctx context.Context, pkgs []Package) ([]string, error) {
	if err := r.setup(); err != nil {
		return nil, err
	}
	debs := filepath.Join(r.Dir, "debs")
	var paths, missing []string
	fetched := make([]bool, len(pkgs)) // the packages to check again after the download
	for i, p := range pkgs {
		if !nameRe.MatchString(p.Name) || strings.ContainsAny(p.Version, " /") || (p.Arch != r.Arch && p.Arch != "all") || len(p.SHA256) != 64 {
			return nil, fmt.Errorf("apt: bad pinned package %s for %s (arch %q, sha256 %q)", p, r.Arch, p.Arch, p.SHA256)
		}
		path := filepath.Join(debs, fmt.Sprintf("%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Arch))
		paths = append(paths, path)
		if ok, err := fileHash(path, p.SHA256); err != nil || !ok {
			missing = append(missing, p.String())
			fetched[i] = true
		}
	}
	if len(missing) > 0 {
		args := append([]string{"apt-get", "download", "-q"}, missing...)
		if _, err := r.apt(ctx, debs, true, args...); err != nil {
			return nil, fmt.Errorf("%w (a pinned version the mirror no longer has needs a new lock)", err)
		}
	}
	for i, p := range pkgs {
		if !fetched[i] {
			continue
		}
		ok, err := fileHash(paths[i], p.SHA256)
		if err != nil {
			return nil, fmt.Errorf("apt: %s: %w", p, err)
		}
		if !ok {
			os.Remove(paths[i])
			return nil, fmt.Errorf("apt: %s: the download does not match its SHA256 %s", p, p.SHA256)
		}
	}
	return paths, nil
}

// fileHash says whether the file at path has the SHA256 want; a missing
// file is not an error.
func fileHash(path, want string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == want, nil
}

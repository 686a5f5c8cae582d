// Package ociimage assembles the leader-elector container image without a
// container engine: a multi-platform OCI image index whose images hold one
// static sidecar binary on an otherwise empty root filesystem (no shell, no
// package manager), plus the few files a static Go program needs at run
// time: /etc/passwd and /etc/group naming the non-root user, and a CA bundle.
//
// The result depends only on its inputs (binaries, version, revision, the
// creation time, the license text and the CA bundle of the pinned
// golang.org/x/crypto/x509roots/fallback module): every timestamp is the
// given creation time, every file is owned by root, and gzip output is
// deterministic, so two builds of the same commit have the same digest.
//
// The Dockerfile at the repository root builds the same image with Docker;
// the constants here are what its tests compare it with.
package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The image's fixed configuration. The Dockerfile states the same values; a
// test compares them.
const (
	// BinaryPath is where the sidecar binary lives in the image.
	BinaryPath = "/sidecar"
	// User is the numeric user:group the sidecar runs as ("nonroot", as in
	// distroless). Numeric, so Kubernetes can check runAsNonRoot without
	// reading /etc/passwd.
	User = "65532:65532"
	// Port is the sidecar's default HTTP port (--http=:4040).
	Port = "4040/tcp"
	// CABundlePath is where Go's crypto/x509 looks first on Linux.
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
	// LicensePath is where the license text is copied.
	LicensePath = "/LICENSE"
	// License is the SPDX identifier of the project's license.
	License = "Apache-2.0"
)

// Entrypoint starts the binary directly: arguments in a pod spec are the
// sidecar's flags.
var Entrypoint = []string{BinaryPath}

// Labels returns the OCI annotation keys set as image labels, for a version
// (e.g. v0.1.0) and a VCS revision (a commit hash).
func Labels(version, revision string) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":         "leader-elector",
		"org.opencontainers.image.description":   "Leader-election sidecar for Kubernetes workloads (etcd or Redis), with fencing tokens",
		"org.opencontainers.image.source":        "https://github.com/leader-elector/leader-elector",
		"org.opencontainers.image.url":           "https://github.com/leader-elector/leader-elector",
		"org.opencontainers.image.documentation": "https://github.com/leader-elector/leader-elector/blob/main/docs/install.md",
		"org.opencontainers.image.licenses":      License,
		"org.opencontainers.image.version":       version,
		"org.opencontainers.image.revision":      revision,
	}
}

// File is one regular file of the image's root filesystem.
type File struct {
	Path string // absolute, e.g. /etc/passwd
	Mode int64  // permission bits
	Data []byte
}

// RootFiles returns the files of the base layer, sorted by path: the user
// and group databases, the CA bundle, and the license text.
func RootFiles(license []byte) ([]File, error) {
	if len(license) == 0 {
		return nil, errors.New("ociimage: the license text is empty")
	}
	ca, err := CABundle()
	if err != nil {
		return nil, err
	}
	files := []File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{Path: CABundlePath, Mode: 0o644, Data: ca},
		{Path: LicensePath, Mode: 0o644, Data: license},
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// CABundle returns Mozilla's root certificates (from the NSS trust store, as
// packaged by golang.org/x/crypto/x509roots/fallback) as PEM. Roots that
// carry a constraint a PEM file cannot express (a distrust-after date) are
// left out, so the file trusts nothing NSS would not.
func CABundle() ([]byte, error) {
	var buf bytes.Buffer
	n := 0
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, fmt.Errorf("ociimage: encoding a root certificate: %w", err)
		}
		n++
	}
	if n == 0 {
		return nil, errors.New("ociimage: the CA bundle is empty")
	}
	return buf.Bytes(), nil
}

// Options describe one build.
type Options struct {
	// Version is the release version (the binary's `version` output, the
	// image tag, the chart's appVersion), e.g. v0.1.0.
	Version string
	// Revision is the VCS revision, e.g. a commit hash.
	Revision string
	// Created is the image's creation time; use the commit time for
	// reproducible builds. Truncated to whole seconds.
	Created time.Time
	// License is the text copied to /LICENSE.
	License []byte
	// Binaries maps a platform ("linux/amd64") to its static sidecar binary.
	Binaries map[string][]byte
}

// Build assembles the image index: one image per platform in Binaries,
// ordered by platform, each with a base layer (RootFiles) shared by all
// platforms and a layer holding the binary.
func Build(o Options) (v1.ImageIndex, error) {
	if o.Version == "" || o.Revision == "" {
		return nil, errors.New("ociimage: version and revision are required")
	}
	if len(o.Binaries) == 0 {
		return nil, errors.New("ociimage: no binaries")
	}
	created := o.Created.UTC().Truncate(time.Second)
	files, err := RootFiles(o.License)
	if err != nil {
		return nil, err
	}
	base, err := layer(files, created)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, platform := range slices.Sorted(maps.Keys(o.Binaries)) {
		p, err := v1.ParsePlatform(platform)
		if err != nil {
			return nil, fmt.Errorf("ociimage: platform %q: %w", platform, err)
		}
		if p.OS != "linux" || p.Architecture == "" {
			return nil, fmt.Errorf("ociimage: platform %q: want linux/<arch>", platform)
		}
		bin, err := layer([]File{{Path: BinaryPath, Mode: 0o755, Data: o.Binaries[platform]}}, created)
		if err != nil {
			return nil, err
		}
		img, err := image(o, *p, created, base, bin)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: p},
		})
	}
	return idx, nil
}

func image(o Options, p v1.Platform, created time.Time, base, bin v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: created}, CreatedBy: "ociimage: /etc/passwd, /etc/group, " + CABundlePath + ", " + LicensePath,
		}},
		mutate.Addendum{Layer: bin, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: created}, CreatedBy: "ociimage: " + BinaryPath,
		}},
	)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: created}
	cf.Author = "leader-elector"
	cf.Config = v1.Config{
		User:         User,
		Entrypoint:   Entrypoint,
		WorkingDir:   "/",
		ExposedPorts: map[string]struct{}{Port: {}},
		Labels:       Labels(o.Version, o.Revision),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	return img, nil
}

// layer writes files, with their parent directories, into a tar stream with
// fixed metadata (owner root, the given time) and wraps it as a gzip layer.
func layer(files []File, modTime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		if !strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("ociimage: %q is not absolute", f.Path)
		}
		name := strings.TrimPrefix(f.Path, "/")
		parts := strings.Split(name, "/")
		for i := 1; i < len(parts); i++ {
			dir := strings.Join(parts[:i], "/") + "/"
			if dirs[dir] {
				continue
			}
			dirs[dir] = true
			if err := tw.WriteHeader(header(dir, tar.TypeDir, 0o755, 0, modTime)); err != nil {
				return nil, fmt.Errorf("ociimage: %w", err)
			}
		}
		if err := tw.WriteHeader(header(name, tar.TypeReg, f.Mode, int64(len(f.Data)), modTime)); err != nil {
			return nil, fmt.Errorf("ociimage: %w", err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("ociimage: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	return l, nil
}

func header(name string, typ byte, mode, size int64, modTime time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		Size:     size,
		ModTime:  modTime,
		Uname:    "root",
		Gname:    "root",
		Format:   tar.FormatPAX,
	}
}

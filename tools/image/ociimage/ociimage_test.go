package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func options() Options {
	return Options{
		Version:  "v1.2.3",
		Revision: "abc123",
		Created:  time.Unix(1_700_000_000, 0),
		License:  []byte("Apache License\n"),
		Binaries: map[string][]byte{"linux/arm64": []byte("arm binary"), "linux/amd64": []byte("amd binary")},
	}
}

func digest(t *testing.T, o Options) v1.Hash {
	t.Helper()
	idx, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBuildIsDeterministic(t *testing.T) {
	a, b := digest(t, options()), digest(t, options())
	if a != b {
		t.Fatalf("two builds of the same inputs differ: %s, %s", a, b)
	}
	// Every input reaches the digest.
	for name, change := range map[string]func(*Options){
		"created":  func(o *Options) { o.Created = o.Created.Add(time.Second) },
		"version":  func(o *Options) { o.Version = "v1.2.4" },
		"revision": func(o *Options) { o.Revision = "def456" },
		"license":  func(o *Options) { o.License = []byte("other\n") },
		"binary":   func(o *Options) { o.Binaries["linux/amd64"] = []byte("other") },
	} {
		o := options()
		change(&o)
		if digest(t, o) == a {
			t.Errorf("changing the %s left the digest unchanged", name)
		}
	}
}

func TestBuildRejectsBadOptions(t *testing.T) {
	for name, change := range map[string]func(*Options){
		"no version":         func(o *Options) { o.Version = "" },
		"no revision":        func(o *Options) { o.Revision = "" },
		"no license":         func(o *Options) { o.License = nil },
		"no binaries":        func(o *Options) { o.Binaries = nil },
		"not linux":          func(o *Options) { o.Binaries = map[string][]byte{"windows/amd64": []byte("x")} },
		"malformed platform": func(o *Options) { o.Binaries = map[string][]byte{"linux/amd64/v1/x": []byte("x")} },
	} {
		t.Run(name, func(t *testing.T) {
			o := options()
			change(&o)
			if _, err := Build(o); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestLayersHoldRootOwnedFiles(t *testing.T) {
	idx, err := Build(options())
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Manifests[0].Platform.Architecture != "amd64" || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("manifests: %+v", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
			if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(1_700_000_000, 0)) {
				t.Errorf("%s: uid %d gid %d mtime %v", h.Name, h.Uid, h.Gid, h.ModTime)
			}
		}
		rc.Close()
	}
	// The base layer in path order, then the binary's layer.
	want := "LICENSE etc/ etc/group etc/passwd etc/ssl/ etc/ssl/certs/ etc/ssl/certs/ca-certificates.crt sidecar"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("files: %s\nwant:  %s", got, want)
	}
}

func TestCABundle(t *testing.T) {
	raw, err := CABundle()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		t.Fatal("no certificate parses")
	}
	n := 0
	for rest := raw; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !c.IsCA {
			t.Errorf("%s is not a CA", c.Subject)
		}
	}
	if n < 100 {
		t.Errorf("%d roots; Mozilla's store has well over 100", n)
	}
	if !bytes.Contains(raw, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Error("not PEM")
	}
}

// Command image builds the leader-elector container image without a
// container engine (see package ociimage), as an OCI image layout:
//
//	image build -out DIR -version V -revision R -created UNIX -license FILE \
//	    -binary linux/amd64=PATH -binary linux/arm64=PATH
//
// and writes the image's base files into a directory, for the Dockerfile:
//
//	image rootfs -license FILE DIR
//
// `make image` (hack/packaging.mk) runs the first with the release binaries.
// Exit status 2 means bad arguments.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/leader-elector/leader-elector/tools/image/ociimage"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// errUsage marks an argument error (exit status 2).
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: image build|rootfs [flags]")
		return 2
	}
	var err error
	switch args[0] {
	case "build":
		err = build(args[1:], stdout, stderr)
	case "rootfs":
		err = rootfs(args[1:], stderr)
	default:
		fmt.Fprintf(stderr, "image: unknown command %q (want build or rootfs)\n", args[0])
		return 2
	}
	switch {
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, err)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "image:", err)
		return 1
	}
	return 0
}

// binaries is a repeatable -binary platform=path flag.
type binaries map[string]string

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(s string) error {
	platform, path, ok := strings.Cut(s, "=")
	if !ok || platform == "" || path == "" {
		return fmt.Errorf("want platform=path, got %q", s)
	}
	if _, dup := b[platform]; dup {
		return fmt.Errorf("platform %s given twice", platform)
	}
	b[platform] = path
	return nil
}

func build(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "OCI layout directory to write (replaced if it exists)")
	version := fs.String("version", "", "release version, e.g. v0.1.0")
	revision := fs.String("revision", "", "VCS revision")
	created := fs.String("created", "", "creation time in Unix seconds (use the commit time)")
	license := fs.String("license", "", "license file copied into the image")
	bins := binaries{}
	fs.Var(bins, "binary", "platform=path of a static sidecar binary; repeat per platform")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for name, v := range map[string]string{"-out": *out, "-version": *version, "-revision": *revision, "-created": *created, "-license": *license} {
		if v == "" {
			return fmt.Errorf("%w: image build: %s is required", errUsage, name)
		}
	}
	if len(bins) == 0 {
		return fmt.Errorf("%w: image build: at least one -binary is required", errUsage)
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("%w: image build: -created %q is not a Unix time in seconds", errUsage, *created)
	}
	lic, err := os.ReadFile(*license)
	if err != nil {
		return err
	}
	opts := ociimage.Options{
		Version:  *version,
		Revision: *revision,
		Created:  time.Unix(secs, 0),
		License:  lic,
		Binaries: map[string][]byte{},
	}
	for platform, path := range bins {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		opts.Binaries[platform] = data
	}
	idx, err := ociimage.Build(opts)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": *version,
	})); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s\n", *out, digest)
	return nil
}

func rootfs(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("image rootfs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	license := fs.String("license", "", "license file copied into the image")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 || *license == "" {
		return fmt.Errorf("%w: image rootfs -license FILE DIR", errUsage)
	}
	lic, err := os.ReadFile(*license)
	if err != nil {
		return err
	}
	files, err := ociimage.RootFiles(lic)
	if err != nil {
		return err
	}
	for _, f := range files {
		path := filepath.Join(fs.Arg(0), filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.Data, os.FileMode(f.Mode)); err != nil {
			return err
		}
	}
	return nil
}

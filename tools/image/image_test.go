package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/tools/image/ociimage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// repoRoot is the leader-elector checkout this module sits in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(mod, []byte("module github.com/leader-elector/leader-elector\n")) {
		t.Fatalf("%s is not the leader-elector checkout: %v", root, err)
	}
	return root
}

func command(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestImage builds the image twice with `make image`, exactly as a release
// does, and inspects what it wrote: an OCI layout holding one multi-platform
// index (linux/amd64, linux/arm64) whose digest does not change between
// builds; per platform a config with the non-root numeric user, the
// entrypoint, the port and the OCI labels (license included); two layers
// holding only the base files and the binary, all owned by root, no shell;
// a static binary for the right machine, which for the host's architecture
// runs and prints the release version.
func TestImage(t *testing.T) {
	root := repoRoot(t)
	version := strings.TrimSpace(command(t, root, "make", "-s", "-f", "hack/packaging.mk", "version"))
	revision := strings.TrimSpace(command(t, root, "git", "rev-parse", "HEAD"))
	epoch, err := strconv.ParseInt(strings.TrimSpace(command(t, root, "git", "log", "-1", "--format=%ct")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var digests []v1.Hash
	var layoutDir string
	for range 2 {
		dist := t.TempDir()
		command(t, root, "make", "-s", "-f", "hack/packaging.mk", "image", "DIST="+dist)
		layoutDir = filepath.Join(dist, "image")
		top, err := layout.ImageIndexFromPath(layoutDir)
		if err != nil {
			t.Fatal(err)
		}
		im, err := top.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version {
			t.Fatalf("index.json: want one index named %s, got %+v", version, im.Manifests)
		}
		digests = append(digests, im.Manifests[0].Digest)
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds of the same commit differ: %s, %s", digests[0], digests[1])
	}
	t.Logf("image index %s", digests[0])

	top, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := top.ImageIndex(digests[0])
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range im.Manifests {
		platforms = append(platforms, d.Platform.String())
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("platforms %v", platforms)
	}
	license, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	for _, d := range im.Manifests {
		t.Run(d.Platform.String(), func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
				t.Errorf("manifest media type %s", mt)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			if cf.OS != "linux" || cf.Architecture != d.Platform.Architecture {
				t.Errorf("config platform %s/%s", cf.OS, cf.Architecture)
			}
			if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/sidecar"}) || len(c.Cmd) != 0 {
				t.Errorf("user %q entrypoint %q cmd %q", c.User, c.Entrypoint, c.Cmd)
			}
			if _, ok := c.ExposedPorts["4040/tcp"]; !ok || len(c.ExposedPorts) != 1 {
				t.Errorf("exposed ports %v", c.ExposedPorts)
			}
			if want := ociimage.Labels(version, revision); !maps.Equal(c.Labels, want) {
				t.Errorf("labels %v\nwant %v", c.Labels, want)
			}
			if c.Labels["org.opencontainers.image.licenses"] != "Apache-2.0" {
				t.Errorf("license label %q", c.Labels["org.opencontainers.image.licenses"])
			}
			if !cf.Created.Time.Equal(time.Unix(epoch, 0)) {
				t.Errorf("created %v, want the commit time %v", cf.Created.Time, time.Unix(epoch, 0))
			}
			files := imageFiles(t, img)
			var names []string
			for name, f := range files {
				names = append(names, name)
				if f.hdr.Uid != 0 || f.hdr.Gid != 0 || (f.hdr.Typeflag != tar.TypeReg && f.hdr.Typeflag != tar.TypeDir) {
					t.Errorf("%s: uid %d gid %d type %c", name, f.hdr.Uid, f.hdr.Gid, f.hdr.Typeflag)
				}
			}
			slices.Sort(names)
			want := []string{"LICENSE", "etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "sidecar"}
			if !slices.Equal(names, want) {
				t.Errorf("files %v, want %v (no shell, nothing else)", names, want)
			}
			if !bytes.Equal(files["LICENSE"].data, license) {
				t.Error("/LICENSE is not the repository's LICENSE")
			}
			if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd: %s", files["etc/passwd"].data)
			}
			if !bytes.HasPrefix(files["etc/ssl/certs/ca-certificates.crt"].data, []byte("-----BEGIN CERTIFICATE-----")) {
				t.Error("no CA bundle")
			}
			bin := files["sidecar"]
			if bin.hdr.Mode != 0o755 {
				t.Errorf("/sidecar mode %o", bin.hdr.Mode)
			}
			checkStaticELF(t, bin.data, d.Platform)
			if d.Platform.Architecture == runtime.GOARCH {
				ran = true
				path := filepath.Join(t.TempDir(), "sidecar")
				if err := os.WriteFile(path, bin.data, 0o755); err != nil {
					t.Fatal(err)
				}
				if got := strings.TrimSpace(command(t, t.TempDir(), path, "version")); got != version {
					t.Errorf("sidecar version printed %q, want %q", got, version)
				}
			}
		})
	}
	if !ran {
		t.Errorf("no image for the host's architecture %s", runtime.GOARCH)
	}
}

type file struct {
	hdr  *tar.Header
	data []byte
}

// imageFiles reads every layer of img (no layer deletes or replaces a file
// of another: the names must be unique).
func imageFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Errorf("%d layers, want 2 (base files, binary)", len(layers))
	}
	out := map[string]file{}
	for _, l := range layers {
		if mt, _ := l.MediaType(); mt != types.OCILayer {
			t.Errorf("layer media type %s", mt)
		}
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
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := out[h.Name]; dup {
				t.Errorf("%s in two layers", h.Name)
			}
			out[h.Name] = file{hdr: h, data: data}
		}
		rc.Close()
	}
	return out
}

func checkStaticELF(t *testing.T, data []byte, p *v1.Platform) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("/sidecar is not an ELF binary: %v", err)
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
	if f.Machine != want {
		t.Errorf("machine %v, want %v", f.Machine, want)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Errorf("%v header: not static", prog.Type)
		}
	}
}

// TestDockerfileMatchesTheImage keeps the Dockerfile, for users who build
// with Docker, in step with what tools/image builds: the runtime stage
// starts from scratch, copies the base files written by this program and
// the binary to the same paths, and sets the same user, port, entrypoint and
// labels. (internal/chartest compares its go build command with make's.)
func TestDockerfileMatchesTheImage(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	stages := regexp.MustCompile(`(?m)^FROM `).Split(text, -1)
	build, final := stages[len(stages)-2], stages[len(stages)-1]
	if !strings.HasPrefix(final, "scratch\n") {
		t.Errorf("runtime stage is FROM %s", strings.SplitN(final, "\n", 2)[0])
	}
	if !regexp.MustCompile(`(?m)^RUN .*cd tools/image && go run \. rootfs -license /src/LICENSE /out/rootfs$`).MatchString(build) {
		t.Error("the build stage does not write the base files with tools/image rootfs")
	}
	instr := map[string][]string{}
	for _, line := range strings.Split(final, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kw, rest, _ := strings.Cut(line, " ")
		instr[kw] = append(instr[kw], strings.TrimSpace(rest))
	}
	if got := instr["RUN"]; len(got) > 0 {
		t.Errorf("the runtime stage runs commands (it has no shell): %q", got)
	}
	if !slices.Equal(instr["COPY"], []string{"--from=build /out/rootfs/ /", "--from=build /out/sidecar " + ociimage.BinaryPath}) {
		t.Errorf("COPY %q", instr["COPY"])
	}
	if !slices.Equal(instr["USER"], []string{ociimage.User}) {
		t.Errorf("USER %q, want %s", instr["USER"], ociimage.User)
	}
	if port, _, _ := strings.Cut(ociimage.Port, "/"); !slices.Equal(instr["EXPOSE"], []string{port}) {
		t.Errorf("EXPOSE %q, want %s", instr["EXPOSE"], port)
	}
	if !slices.Equal(instr["WORKDIR"], []string{"/"}) {
		t.Errorf("WORKDIR %q", instr["WORKDIR"])
	}
	entry, err := json.Marshal(ociimage.Entrypoint)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(instr["ENTRYPOINT"], []string{string(entry)}) {
		t.Errorf("ENTRYPOINT %q, want %s", instr["ENTRYPOINT"], entry)
	}
	if len(instr["LABEL"]) != 1 {
		t.Fatalf("want one LABEL instruction, got %q", instr["LABEL"])
	}
	labels := map[string]string{}
	for _, m := range regexp.MustCompile(`([\w.]+)="([^"]*)"`).FindAllStringSubmatch(instr["LABEL"][0], -1) {
		labels[m[1]] = m[2]
	}
	if want := ociimage.Labels("${VERSION}", "${REVISION}"); !maps.Equal(labels, want) {
		t.Errorf("Dockerfile labels %v\nwant %v", labels, want)
	}
}

// TestRootfs writes the base files as the Dockerfile does and compares them
// with the image's.
func TestRootfs(t *testing.T) {
	dir := t.TempDir()
	license := filepath.Join(repoRoot(t), "LICENSE")
	var stderr bytes.Buffer
	if code := run([]string{"rootfs", "-license", license, dir}, io.Discard, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lic, err := os.ReadFile(license)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ociimage.RootFiles(lic)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		rel, _ := filepath.Rel(dir, path)
		i := slices.IndexFunc(want, func(f ociimage.File) bool { return f.Path == "/"+filepath.ToSlash(rel) })
		if i < 0 {
			t.Errorf("unexpected file %s", rel)
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Equal(data, want[i].Data) {
			t.Errorf("%s differs from the image's", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("%d files, want %d", n, len(want))
	}
}

func TestBadArguments(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := []string{"build", "-out", t.TempDir(), "-version", "v1", "-revision", "r", "-created", "0", "-license", bin, "-binary", "linux/amd64=" + bin}
	for name, args := range map[string][]string{
		"no command":       {},
		"unknown command":  {"push"},
		"no binary":        ok[:len(ok)-2],
		"no version":       slices.Concat(ok[:3], ok[5:]),
		"bad created":      slices.Concat(ok[:7], []string{"-created", "yesterday"}, ok[9:]),
		"negative created": slices.Concat(ok[:7], []string{"-created", "-5"}, ok[9:]),
		"binary twice":     append(slices.Clone(ok), "-binary", "linux/amd64="+bin),
		"binary no path":   append(slices.Clone(ok), "-binary", "linux/arm64"),
		"rootfs no dir":    {"rootfs", "-license", bin},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(args, io.Discard, &stderr); code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if stderr.Len() == 0 {
				t.Error("no message")
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run(ok, &stdout, &stderr); code != 0 {
		t.Errorf("valid arguments: exit %d: %s", code, stderr.String())
	}
}

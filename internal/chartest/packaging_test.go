package chartest

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// makePackaging runs a target of hack/packaging.mk from the repository root.
func makePackaging(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "make", append([]string{"-s", "-f", "hack/packaging.mk"}, args...)...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestManifestsMatchTheChart(t *testing.T) {
	helmPath(t)
	dir := t.TempDir()
	makePackaging(t, "manifests", "MANIFESTS="+dir)
	generated, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	checkedIn, err := filepath.Glob(filepath.Join(repoRoot(t), "manifests", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base := func(ps []string) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = filepath.Base(p)
		}
		return out
	}
	if !slices.Equal(base(generated), base(checkedIn)) {
		t.Fatalf("manifests/ holds %v, make manifests generates %v", base(checkedIn), base(generated))
	}
	for _, g := range generated {
		want, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", filepath.Base(g)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("manifests/%s is out of date with the chart: run `make manifests`.\n%s", filepath.Base(g), firstDiff(string(want), string(got)))
		}
	}
}

// TestRBACManifest pins what other packages rely on: manifests/rbac.yaml
// holds exactly a ServiceAccount, Role and RoleBinding named leader-elector,
// and the Role grants exactly the sidecar's permissions.
func TestRBACManifest(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := splitDocs(t, string(raw))
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind()+"/"+o.GetName())
		if o.GetNamespace() != "" {
			t.Errorf("%s/%s has a namespace; the file must apply to any namespace", o.GetKind(), o.GetName())
		}
	}
	want := []string{"ServiceAccount/leader-elector", "Role/leader-elector", "RoleBinding/leader-elector"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("objects: got %v, want %v", kinds, want)
	}
	var role rbacv1.Role
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[1].Object, &role); err != nil {
		t.Fatal(err)
	}
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "controllerrevisions"}, Verbs: []string{"get"}},
	}
	if len(role.Rules) != len(wantRules) {
		t.Fatalf("rules: got %+v", role.Rules)
	}
	for i, r := range role.Rules {
		w := wantRules[i]
		if !slices.Equal(r.APIGroups, w.APIGroups) || !slices.Equal(r.Resources, w.Resources) || !slices.Equal(r.Verbs, w.Verbs) || len(r.ResourceNames) != 0 {
			t.Errorf("rule %d: got %+v, want %+v", i, r, w)
		}
	}
	var binding rbacv1.RoleBinding
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[2].Object, &binding); err != nil {
		t.Fatal(err)
	}
	if binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != "leader-elector" ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != "leader-elector" {
		t.Errorf("binding: %+v", binding)
	}
}

func TestImageBinaryIsStatic(t *testing.T) {
	dist := t.TempDir()
	const version = "v9.8.7-test"
	makePackaging(t, "image-binary", "DIST="+dist, "VERSION="+version)
	bin := filepath.Join(dist, "sidecar")

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("imported libraries: %v (%v)", libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Error("symbol table present: -s was not applied")
	}

	out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("sidecar version: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != version {
		t.Errorf("version: got %q, want %q (the -X stamp of internal/cli.buildVersion)", got, version)
	}
	out, err = exec.CommandContext(t.Context(), bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("sidecar --help: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--election") {
		t.Errorf("--help does not list --election:\n%s", out)
	}
	// -trimpath: no path of this checkout inside the binary.
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(repoRoot(t))) {
		t.Error("binary contains the checkout's path: -trimpath was not applied")
	}
}

// goBuildCommand extracts the `go build` command of a text (a Dockerfile
// RUN line or make -n output), with line continuations joined, and returns
// its words with the -o argument dropped.
func goBuildCommand(t *testing.T, text string) []string {
	t.Helper()
	text = strings.ReplaceAll(text, "\\\n", " ")
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		i := strings.Index(line, "go build ")
		if i < 0 {
			continue
		}
		words := shellWords(t, line[i:])
		var out []string
		for j := 0; j < len(words); j++ {
			if words[j] == "-o" {
				j++
				continue
			}
			out = append(out, words[j])
		}
		return out
	}
	t.Fatalf("no go build command in:\n%s", text)
	return nil
}

// shellWords splits a command line on blanks, honouring double quotes.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quotes in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestDockerfileBuildsLikeImageBinary(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(raw)
	const version = "v1.2.3"
	docker := goBuildCommand(t, strings.ReplaceAll(dockerfile, "${VERSION}", version))
	mk := goBuildCommand(t, makePackaging(t, "-n", "image-binary", "VERSION="+version, "GO=go"))
	if !slices.Equal(docker, mk) {
		t.Errorf("the Dockerfile and make image-binary build differently:\n  Dockerfile: %q\n  make:       %q", docker, mk)
	}
	if !slices.Contains(docker, "-trimpath") {
		t.Errorf("build lacks -trimpath: %q", docker)
	}
	if !regexp.MustCompile(`(?m)^\s*CGO_ENABLED=0 `).MatchString(dockerfile) {
		t.Error("the Dockerfile does not build with CGO_ENABLED=0")
	}

	// The builder's Go matches go.mod; the runtime stage starts from nothing
	// (tools/image compares the rest of it with the image it builds).
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatal("no go directive in go.mod")
	}
	if want := "FROM --platform=$BUILDPLATFORM golang:" + string(goVersion[1]) + " AS build"; !strings.Contains(dockerfile, want) {
		t.Errorf("builder stage is not %q", want)
	}
	froms := regexp.MustCompile(`(?m)^FROM .*$`).FindAllString(dockerfile, -1)
	if last := froms[len(froms)-1]; last != "FROM scratch" {
		t.Errorf("runtime stage is %q, want FROM scratch", last)
	}
	if regexp.MustCompile(`(?m)^(RUN|SHELL)`).MatchString(dockerfile[strings.LastIndex(dockerfile, "\nFROM "):]) {
		t.Error("the runtime stage runs commands; it has no shell")
	}
}

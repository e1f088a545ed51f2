package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// `make build` produces a static binary, with no dynamic loader to find
// (it runs in a scratch or distroless image), and stamps the version in.
// The test runs the Makefile's own target, into a temporary directory.
func TestMakeBuild_StaticWithVersion(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("checks an ELF binary")
	}
	makeCmd, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed to check `make build`: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	const version = "v9.9.9-buildtest"
	build := exec.Command(makeCmd, "-s", "-C", filepath.Join("..", ".."), "build", "BIN="+bin, "VERSION="+version, "GO="+goTool())
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("open the binary as ELF: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: dynamically linked", p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Error("the binary has a .dynamic section")
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary imports libraries %v (%v), want none", libs, err)
	}

	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("switchboard version: %v", err)
	}
	if want := "switchboard " + version + " (go"; !strings.HasPrefix(string(out), want) {
		t.Errorf("switchboard version = %q, want it to start with %q", out, want)
	}
}

// Without VERSION, make build stamps what git describes of the checkout,
// or "dev" without git or outside a git checkout: never an empty version.
func TestMakeBuild_DefaultVersion(t *testing.T) {
	t.Parallel()
	makeCmd, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make is needed to check `make build`: %v", err)
	}
	root := filepath.Join("..", "..")
	described := "dev"
	describe := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	describe.Dir = root
	if out, err := describe.Output(); err == nil {
		described = strings.TrimSpace(string(out))
	}
	for _, tt := range []struct{ path, want string }{
		{os.Getenv("PATH"), described},
		{t.TempDir(), "dev"}, // no git on this PATH
	} {
		dry := exec.Command(makeCmd, "-s", "-n", "-C", root, "build", "BIN=x", "GO="+goTool())
		dry.Env = append(withoutEnv(os.Environ(), "VERSION", "PATH"), "PATH="+tt.path)
		out, err := dry.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n build: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`switchboard\.Version=(\S+)"`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("make -n build = %q, want -X ...switchboard.Version=", out)
		}
		if string(m[1]) != tt.want {
			t.Errorf("make build with PATH=%s stamps %q, want %q", tt.path, m[1], tt.want)
		}
	}
}

func TestBuildVersion(t *testing.T) {
	t.Parallel()
	module := func(v string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/switchboard-rt/switchboard", Version: v}}
	}
	tests := []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		want    string
	}{
		{"Stamped", "v1.2.3-4-gabcdef0-dirty", module("v1.0.0"), "v1.2.3-4-gabcdef0-dirty"},
		{"GoInstall", "dev", module("v1.0.0"), "v1.0.0"},
		{"Checkout", "dev", module("(devel)"), "dev"},
		{"NoBuildInfo", "dev", nil, "dev"},
		{"EmptyStamp", "", module(""), "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := buildVersion(tt.stamped, tt.bi); got != tt.want {
				t.Errorf("buildVersion(%q, %v) = %q, want %q", tt.stamped, tt.bi, got, tt.want)
			}
		})
	}
}

// withoutEnv is env without the named variables.
func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			if name == n {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

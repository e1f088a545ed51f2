package client

import (
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// module is the import path prefix of Switchboard's own packages.
const module = "github.com/switchboard-rt/switchboard"

// isStd reports whether path is a standard library package: its first
// element has no dot.
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// ownOrStd reports whether a type of package path may appear in package
// client's exported API: the standard library's and Switchboard's own.
func ownOrStd(path string) bool {
	return isStd(path) || path == module || strings.HasPrefix(path, module+"/")
}

// foreignTypes returns, for every exported identifier of pkg whose type,
// fields, methods or signature reach a type of a package that allowed
// refuses, where and which. It follows the types a caller can reach: the
// exported fields and methods of every named type of the API, also of
// unexported ones returned by exported functions, and of other Switchboard
// packages; a standard library type is not looked into.
func foreignTypes(pkg *types.Package, allowed func(path string) bool) []string {
	w := &apiWalker{root: pkg, allowed: allowed, seen: map[*types.Named]bool{}}
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		if obj := scope.Lookup(name); obj.Exported() {
			w.walk(name, obj.Type())
		}
	}
	return w.bad
}

type apiWalker struct {
	root    *types.Package
	allowed func(string) bool
	seen    map[*types.Named]bool
	bad     []string
}

func (w *apiWalker) walk(where string, t types.Type) {
	switch t := types.Unalias(t).(type) {
	case *types.Named:
		obj := t.Obj()
		if obj.Pkg() != nil && obj.Pkg() != w.root && !w.allowed(obj.Pkg().Path()) {
			w.bad = append(w.bad, fmt.Sprintf("%s: %s", where, t))
			return
		}
		for i := range t.TypeArgs().Len() {
			w.walk(where, t.TypeArgs().At(i))
		}
		if obj.Pkg() == nil || obj.Pkg() != w.root && isStd(obj.Pkg().Path()) || w.seen[t] {
			return // builtin (error), or the standard library's: not looked into
		}
		w.seen[t] = true
		w.walk(obj.Name(), t.Underlying())
		// The methods of *T include those of T and the promoted ones; an
		// interface's are walked with its underlying type.
		ms := types.NewMethodSet(types.NewPointer(t))
		for i := range ms.Len() {
			if m := ms.At(i).Obj(); m.Exported() {
				w.walk(obj.Name()+"."+m.Name(), m.Type())
			}
		}
	case *types.Pointer:
		w.walk(where, t.Elem())
	case *types.Slice:
		w.walk(where, t.Elem())
	case *types.Array:
		w.walk(where, t.Elem())
	case *types.Chan:
		w.walk(where, t.Elem())
	case *types.Map:
		w.walk(where, t.Key())
		w.walk(where, t.Elem())
	case *types.Signature:
		for _, tuple := range []*types.Tuple{t.Params(), t.Results()} {
			for i := range tuple.Len() {
				w.walk(where, tuple.At(i).Type())
			}
		}
	case *types.Struct:
		for i := range t.NumFields() {
			// An embedded field promotes its exported fields and methods
			// even when its own name is unexported.
			if f := t.Field(i); f.Exported() || f.Embedded() {
				w.walk(where+"."+f.Name(), f.Type())
			}
		}
	case *types.Interface:
		for i := range t.NumMethods() {
			if m := t.Method(i); m.Exported() {
				w.walk(where+"."+m.Name(), m.Type())
			}
		}
	case *types.TypeParam:
		w.walk(where, t.Constraint())
	}
}

// TestExportedAPI_OwnAndStdTypesOnly: package client's exported API
// exposes no type of a third-party package (such as the WebSocket library
// it uses), so that callers depend on Switchboard and the standard library
// alone, and the client may change its internals.
func TestExportedAPI_OwnAndStdTypesOnly(t *testing.T) {
	t.Parallel()
	pkg := loadExportData(t, module+"/client")
	if pkg.Scope().Lookup("Dial") == nil || pkg.Scope().Lookup("Config") == nil {
		t.Fatalf("package %s holds no Dial or Config: not the client", pkg.Path())
	}
	for _, bad := range foreignTypes(pkg, ownOrStd) {
		t.Errorf("exported API uses a third-party type: %s", bad)
	}
}

// loadExportData type-checks nothing itself: `go list -export` compiles
// path and its dependencies (or takes them from the build cache) and the
// compiler's export data describes the package.
func loadExportData(t *testing.T, path string) *types.Package {
	t.Helper()
	cmd := exec.Command(goCommand(), "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}", path)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -export %s: %v", path, err)
	}
	exports := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if p, file, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok && file != "" {
			exports[p] = file
		}
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", func(p string) (io.ReadCloser, error) {
		file, ok := exports[p]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", p)
		}
		return os.Open(file)
	})
	pkg, err := imp.Import(path)
	if err != nil {
		t.Fatalf("import %s: %v", path, err)
	}
	return pkg
}

// goCommand is the go command of the toolchain running the test.
func goCommand() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// The walker finds a third-party type wherever the API exposes it, and
// only there.
func TestForeignTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want bool
	}{
		{"FieldPointer", "type Config struct{ Dialer *tp.Dialer }", true},
		{"UnexportedField", "type Config struct{ dialer *tp.Dialer }", false},
		{"EmbeddedField", "type Conn struct{ *tp.Dialer }", true},
		{"FuncParam", "func Dial(d tp.Dialer) {}", true},
		{"FuncResult", "func Dial() (int, *tp.Dialer) { return 0, nil }", true},
		{"UnexportedFunc", "func dial(d tp.Dialer) {}", false},
		{"Method", "type C struct{}\nfunc (C) Dialer() tp.Dialer { return tp.Dialer{} }", true},
		{"PointerMethod", "type C struct{}\nfunc (*C) Set(o tp.Option) {}", true},
		{"UnexportedMethod", "type C struct{}\nfunc (*C) set(o tp.Option) {}", false},
		{"Var", "var Options map[string][]tp.Option", true},
		{"Const", "const Default tp.Option = 1", true},
		{"FuncField", "type Config struct{ Hook func(chan<- tp.Option) }", true},
		{"InterfaceMethod", "type Doer interface{ Do() tp.Option }", true},
		{"UnexportedTypeReturned", "type inner struct{ D tp.Dialer }\nfunc New() *inner { return nil }", true},
		{"UnexportedTypeHidden", "type inner struct{ d tp.Dialer }\nfunc New() *inner { return nil }", false},
		{"TypeArgument", "type Box[T any] struct{ V T }\nvar B Box[tp.Option]", true},
		{"Alias", "type D = tp.Dialer\nvar X D", true},
		{"Std", "var Now func() clock.Time", false},
		{"PromotedMethod", "type C struct{ clock.Time }", true},
		{"Clean", "type Config struct{ URLs []string; Timeout clock.Duration }", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkg := checkSource(t, "package api\nimport (\n\t\"example.com/tp\"\n\t\"fake/clock\"\n)\nvar _ tp.Option\nvar _ clock.Duration\n"+tt.src+"\n")
			bad := foreignTypes(pkg, ownOrStd)
			if got := len(bad) > 0; got != tt.want {
				t.Errorf("foreignTypes(%q) = %q, want found %v", tt.src, bad, tt.want)
			}
		})
	}
}

// checkSource type-checks src, a package that may import example.com/tp, a
// third-party package, and fake/clock, a standard library package, both
// made up here; clock.Time has a method that returns a tp.Option (which a
// real one could not), promoted to any struct that embeds it.
func checkSource(t *testing.T, src string) *types.Package {
	t.Helper()
	fset := token.NewFileSet()
	pkgs := map[string]*types.Package{}
	imp := importerFunc(func(path string) (*types.Package, error) {
		if p := pkgs[path]; p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("no package %s here", path)
	})
	check := func(path, src string) *types.Package {
		f, err := parser.ParseFile(fset, path+".go", src, 0)
		if err != nil {
			t.Fatal(err)
		}
		pkg, err := (&types.Config{Importer: imp}).Check(path, fset, []*ast.File{f}, nil)
		if err != nil {
			t.Fatalf("check %q: %v", src, err)
		}
		pkgs[path] = pkg
		return pkg
	}
	check("example.com/tp", "package tp\ntype Dialer struct{ Timeout int }\ntype Option int\n")
	check("fake/clock", "package clock\nimport \"example.com/tp\"\ntype Duration int64\ntype Time struct{}\nfunc (Time) Option() tp.Option { return 0 }\n")
	return check("example.com/api", src)
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// lookupEnv is os.LookupEnv, replaced in tests.
type lookupEnv func(string) (string, bool)

// flagError is a bad flag or environment value; its message names the flag.
type flagError struct {
	flag string
	err  error
}

func (e *flagError) Error() string { return "--" + e.flag + ": " + e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// flagSet is a flag.FlagSet that also reads SWITCHBOARD_* variables and
// refuses a flag given twice.
type flagSet struct {
	*flag.FlagSet
	env lookupEnv
	// alias maps extra environment variables to flags (REDIS_URL).
	alias map[string]string
	// help receives the usage for -h. Default: os.Stderr.
	help io.Writer
	// about opens the usage: the command line and what the command does.
	about string
	// showEnv lists each flag's environment variables in the usage.
	showEnv bool
	// failed is the first bad value met while parsing, with its flag.
	failed *flagError
}

func newFlagSet(name string, env lookupEnv) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flagSet{FlagSet: fs, env: env, alias: map[string]string{}, help: os.Stderr}
}

// errExtraArgs is a command line with words that are not flags.
var errExtraArgs = errors.New("unexpected argument")

// errHelp says that -h was asked for and the usage printed: exit 0.
var errHelp = errors.New("help printed")

// countedValue counts how often a flag was set on the command line, and
// records a bad value with the flag's name, whatever words the flag
// package would wrap it in.
type countedValue struct {
	flag.Value
	name string
	fs   *flagSet
	n    int
}

func (v *countedValue) Set(s string) error {
	v.n++
	err := errors.New("given more than once")
	if v.n == 1 {
		if err = v.Value.Set(s); err == nil {
			return nil
		}
		err = fmt.Errorf("invalid value %q: %s", s, v.fs.want(v.name, err.Error()))
	}
	if v.fs.failed == nil {
		v.fs.failed = &flagError{flag: v.name, err: err}
	}
	return err
}

// String returns the wrapped flag's value; the flag package calls it on a
// zero countedValue too, when it lists defaults.
func (v *countedValue) String() string {
	if v == nil || v.Value == nil {
		return ""
	}
	return v.Value.String()
}

// Get returns the wrapped flag's value, so that countedValue is a
// flag.Getter like the values it wraps.
func (v *countedValue) Get() any {
	if g, ok := v.Value.(flag.Getter); ok {
		return g.Get()
	}
	return v.Value.String()
}

type countedBool struct{ countedValue }

func (v *countedBool) IsBoolFlag() bool { return true }

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args, then fills every flag not given on the command line
// from its environment variable. Errors name the flag.
func (fs *flagSet) parse(args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		cv := countedValue{Value: f.Value, name: f.Name, fs: fs}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			f.Value = &countedBool{cv}
		} else {
			f.Value = &cv
		}
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if _, werr := io.WriteString(fs.help, fs.usage()); werr != nil {
				return fmt.Errorf("print help: %w", werr)
			}
			return errHelp
		}
		if fs.failed != nil {
			return fs.failed
		}
		return fs.explain(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w %q: every setting is a --flag (booleans take --flag=false)", errExtraArgs, fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		for _, name := range fs.envNames(f.Name) {
			if v, ok := fs.env(name); ok && v != "" {
				// The flag's own Value: the counting wrapper would
				// count the variable as a use on the command line and
				// wrap its error a second time.
				if serr := unwrapValue(f.Value).Set(v); serr != nil {
					err = &flagError{flag: f.Name, err: fmt.Errorf("invalid value %q in %s: %s", v, name, fs.want(f.Name, serr.Error()))}
				}
				return
			}
		}
	})
	return err
}

// envNames returns the environment variables of a flag: its own, then its
// aliases.
func (fs *flagSet) envNames(flagName string) []string {
	var aliases []string
	for alias, target := range fs.alias {
		if target == flagName {
			aliases = append(aliases, alias)
		}
	}
	slices.Sort(aliases)
	return append([]string{envName(flagName)}, aliases...)
}

// usage returns the help of -h: about, then every flag with the kind of
// value it takes, its environment variables (when the command reads them),
// what it does and its default. A usage text that states the default
// itself ("(default: random)") gets none added.
func (fs *flagSet) usage() string {
	var b strings.Builder
	b.WriteString(fs.about)
	b.WriteString("\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		head := "  --" + f.Name
		if kind := valueKind(f.Value); kind != "" {
			head += " " + kind
		}
		if fs.showEnv {
			head = fmt.Sprintf("%-34s %s", head, strings.Join(fs.envNames(f.Name), ", "))
		}
		b.WriteString(head + "\n        " + f.Usage)
		if zero := f.DefValue == "" || f.DefValue == "0" || f.DefValue == "false" || f.DefValue == "0s"; !zero && !strings.Contains(f.Usage, "(default") {
			fmt.Fprintf(&b, " (default %s)", shortDuration(f.DefValue))
		}
		b.WriteString("\n")
	})
	return b.String()
}

// shortDuration drops the zero tail of a duration's text: 5m0s is 5m,
// 1h0m0s is 1h. Other text is returned as it is.
func shortDuration(s string) string {
	if _, err := time.ParseDuration(s); err != nil {
		return s
	}
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// unwrapValue returns the Value a countedValue wraps, or v.
func unwrapValue(v flag.Value) flag.Value {
	switch cv := v.(type) {
	case *countedValue:
		return cv.Value
	case *countedBool:
		return cv.Value
	}
	return v
}

// valueKind names the kind of value a flag takes, for the usage; "" for a
// boolean, which takes none.
func valueKind(v flag.Value) string {
	v = unwrapValue(v)
	switch v.(type) {
	case *sizeValue:
		return "size"
	case *listValue:
		return "list"
	case *addressValue:
		return "host:port"
	}
	if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return ""
	}
	g, ok := v.(flag.Getter)
	if !ok {
		return "value"
	}
	switch g.Get().(type) {
	case time.Duration:
		return "duration"
	case int, int64, uint, uint64:
		return "int"
	case float64:
		return "number"
	case string:
		return "string"
	}
	return "value"
}

// explain turns the flag package's errors that no Value saw (unknown flags,
// missing values) into ones naming the flag.
func (fs *flagSet) explain(err error) error {
	msg := err.Error()
	if _, name, ok := strings.Cut(msg, "flag provided but not defined: -"); ok {
		return &flagError{flag: strings.TrimLeft(name, "-"), err: errors.New("no such flag")}
	}
	if _, name, ok := strings.Cut(msg, "flag needs an argument: -"); ok {
		return &flagError{flag: strings.TrimLeft(name, "-"), err: errors.New("needs a value")}
	}
	return err
}

// sizeValue is a byte size flag: plain bytes, or a number with B, KiB, MiB
// or GiB.
type sizeValue int64

func (v *sizeValue) String() string { return strconv.FormatInt(int64(*v), 10) }

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = sizeValue(n)
	return nil
}

func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			mult, t = u.mult, strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive size such as 65536, 512KiB or 4MiB")
	}
	if n > (1<<62)/mult {
		return 0, errors.New("size too large")
	}
	return n * mult, nil
}

// listValue is a comma-separated list flag.
type listValue []string

func (v *listValue) String() string { return strings.Join(*v, ",") }

func (v *listValue) Set(s string) error {
	*v = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*v = append(*v, p)
		}
	}
	return nil
}

// want says what kind of value a flag takes, for the flag package's terse
// "parse error".
func (fs *flagSet) want(name, reason string) string {
	f := fs.Lookup(name)
	if f == nil || reason != "parse error" {
		return reason
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return reason
	}
	switch g.Get().(type) {
	case time.Duration:
		return "want a duration such as 500ms, 5s or 2m"
	case int, int64, uint, uint64:
		return "want a whole number"
	case float64:
		return "want a number"
	case bool:
		return "want true or false"
	}
	return reason
}

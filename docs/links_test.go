// Package docs holds the project's documentation; its test checks that the
// links of every Markdown page resolve.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// pages are the Markdown files whose links are checked, relative to the
// repository root.
var pages = []string{"README.md", "docs/*.md", "deploy/README.md", "clients/js/README.md"}

var (
	link    = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	fence   = regexp.MustCompile("(?ms)^```.*?^```")
)

// slug is the anchor GitHub gives a heading: lower case, without
// punctuation other than hyphens and underscores, spaces as hyphens.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// anchors returns the heading anchors of a Markdown text.
func anchors(text string) map[string]bool {
	a := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
		a[slug(m[1])] = true
	}
	return a
}

func TestLinks_Resolve(t *testing.T) {
	t.Parallel()
	root := ".."
	var files []string
	for _, p := range pages {
		m, err := filepath.Glob(filepath.Join(root, p))
		if err != nil || len(m) == 0 {
			t.Fatalf("no page matches %s", p)
		}
		files = append(files, m...)
	}
	checked := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := fence.ReplaceAllString(string(raw), "")
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), path)
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %q: %v", file, target, err)
					continue
				}
			}
			if anchor != "" {
				body, err := os.ReadFile(dest)
				if err != nil {
					t.Errorf("%s: link %q: %v", file, target, err)
					continue
				}
				if !anchors(string(body))[anchor] {
					t.Errorf("%s: link %q: %s has no heading with anchor #%s", file, target, dest, anchor)
				}
			}
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("checked %d links, want the pages' links found", checked)
	}
}

// TestLinks_NoFilesOutsideTheRepository: the pages name no file of the
// team's own notes (PROTOCOL.md, STYLE.md, DESIGN.md live outside the
// repository; docs/protocol.md is the repository's contract).
func TestLinks_NoFilesOutsideTheRepository(t *testing.T) {
	t.Parallel()
	outside := regexp.MustCompile(`\b(PROTOCOL|STYLE|DESIGN)\.md\b`)
	for _, p := range pages {
		m, _ := filepath.Glob(filepath.Join("..", p))
		for _, file := range m {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(string(raw), "\n") {
				if outside.MatchString(line) {
					t.Errorf("%s:%d names %s, which is not in the repository", file, i+1, outside.FindString(line))
				}
			}
		}
	}
}

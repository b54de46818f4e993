package fpart

import (
	"path"
	"strings"
)

// filter holds the include and exclude patterns of fpart's -y/-Y/-x/-X.
//
// fpart(1) matches a pattern without '/' against the leaf name, and a pattern with '/'
// against the whole path as fpart prints it (the root as given, then the relative path),
// with fnmatch(3) flags FNM_PERIOD (and FNM_PATHNAME for paths; FNM_CASEFOLD for -X/-Y).
// krsync also matches path patterns against the path relative to the root, so that
// "-x sub/dir" works whatever the source mount point is called.
type filter struct {
	exclude, excludeFold, include, includeFold []string
	hasPathPattern, hasInclude, hasExclude     bool
}

func newFilter(o Options) filter {
	f := filter{exclude: o.Exclude, excludeFold: o.ExcludeFold, include: o.Include, includeFold: o.IncludeFold}
	f.hasInclude = len(f.include)+len(f.includeFold) > 0
	f.hasExclude = len(f.exclude)+len(f.excludeFold) > 0
	for _, list := range [][]string{f.exclude, f.excludeFold, f.include, f.includeFold} {
		for _, p := range list {
			if strings.Contains(p, "/") {
				f.hasPathPattern = true
			}
		}
	}
	return f
}

// excluded reports whether -x/-X reject the entry.
func (f *filter) excluded(name, fullPath, rel string) bool {
	return matchAny(f.exclude, name, fullPath, rel, false) || matchAny(f.excludeFold, name, fullPath, rel, true)
}

// included reports whether -y/-Y accept the entry (true when there are no include patterns).
func (f *filter) included(name, fullPath, rel string) bool {
	if len(f.include) == 0 && len(f.includeFold) == 0 {
		return true
	}
	return matchAny(f.include, name, fullPath, rel, false) || matchAny(f.includeFold, name, fullPath, rel, true)
}

func matchAny(patterns []string, name, fullPath, rel string, fold bool) bool {
	for _, p := range patterns {
		if !strings.Contains(p, "/") {
			if fnmatch(p, name, false, fold) {
				return true
			}
			continue
		}
		if fnmatch(p, fullPath, true, fold) || fnmatch(p, rel, true, fold) {
			return true
		}
	}
	return false
}

// fnmatch reports whether s matches the shell pattern like fnmatch(3) in the C locale with
// FNM_PERIOD (a leading '.' must be matched by a literal '.'), plus FNM_PATHNAME ('/' only
// matched by a literal '/') when pathname is set, and ASCII FNM_CASEFOLD when fold is set.
// It works on bytes, so names of any bytes match. A malformed bracket matches a literal '['.
func fnmatch(pattern, s string, pathname, fold bool) bool {
	p, i := 0, 0
	// The position after the last '*' and the string position it was tried at, for backtracking.
	starP, starI := -1, -1
	for i < len(s) {
		if p < len(pattern) {
			c := pattern[p]
			switch {
			case c == '*':
				if leadingPeriod(s, i, pathname) {
					break // a '*' cannot match a leading period
				}
				for p < len(pattern) && pattern[p] == '*' {
					p++
				}
				starP, starI = p, i
				continue
			case c == '?':
				if (pathname && s[i] == '/') || leadingPeriod(s, i, pathname) {
					break
				}
				p++
				i++
				continue
			case c == '[':
				if (pathname && s[i] == '/') || leadingPeriod(s, i, pathname) {
					break
				}
				matched, next, ok := matchBracket(pattern, p, s[i], fold)
				if !ok { // not a bracket expression: a literal '['
					if s[i] == '[' {
						p++
						i++
						continue
					}
					break
				}
				if matched {
					p = next
					i++
					continue
				}
			default:
				if c == '\\' && p+1 < len(pattern) {
					c = pattern[p+1]
					if sameByte(c, s[i], fold) {
						p += 2
						i++
						continue
					}
					break
				}
				if sameByte(c, s[i], fold) {
					p++
					i++
					continue
				}
			}
		}
		// Mismatch: let the last '*' swallow one more byte, unless that byte is a '/'
		// it may not cross.
		if starP < 0 || (pathname && s[starI] == '/') {
			return false
		}
		starI++
		p, i = starP, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// leadingPeriod reports whether s[i] is a period that FNM_PERIOD protects.
func leadingPeriod(s string, i int, pathname bool) bool {
	return s[i] == '.' && (i == 0 || (pathname && s[i-1] == '/'))
}

func sameByte(a, b byte, fold bool) bool {
	return a == b || (fold && lower(a) == lower(b))
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// matchBracket matches c against the bracket expression at pattern[start] ('[').
// ok is false when the expression is not terminated (then '[' is literal).
func matchBracket(pattern string, start int, c byte, fold bool) (matched bool, next int, ok bool) {
	p := start + 1
	negate := false
	if p < len(pattern) && (pattern[p] == '!' || pattern[p] == '^') {
		negate = true
		p++
	}
	first := true
	for p < len(pattern) {
		lo := pattern[p]
		if lo == ']' && !first {
			return matched != negate, p + 1, true
		}
		first = false
		if lo == '\\' && p+1 < len(pattern) {
			p++
			lo = pattern[p]
		}
		p++
		hi := lo
		if p+1 < len(pattern) && pattern[p] == '-' && pattern[p+1] != ']' {
			hi = pattern[p+1]
			p += 2
			if hi == '\\' && p < len(pattern) {
				hi = pattern[p]
				p++
			}
		}
		if inRange(c, lo, hi) || (fold && (inRange(lower(c), lower(lo), lower(hi)) || inRange(upper(c), upper(lo), upper(hi)))) {
			matched = true
		}
	}
	return false, 0, false
}

func inRange(c, lo, hi byte) bool { return lo <= c && c <= hi }

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// Filter is the walk's choice of entries by -x/-X/-y/-Y, for a caller that must leave alone
// what the walk leaves out: krsync --mirror deletes no destination entry the walk would not
// have listed, as rsync's --delete spares excluded files (rsync(1), --delete-excluded).
type Filter struct {
	f    filter
	root string
}

// NewFilter returns the filter of opts for a walk of root (the root as given to Walk: path
// patterns match against it followed by the relative path, and against the relative path
// alone), or nil when opts have no patterns.
func NewFilter(opts Options, root string) *Filter {
	f := newFilter(opts)
	if !f.hasExclude && !f.hasInclude {
		return nil
	}
	return &Filter{f: f, root: root}
}

// SkipsRoot reports whether -x/-X exclude the root itself, as fpart applies them to it too:
// the walk then lists nothing at all. A nil Filter skips nothing.
func (f *Filter) SkipsRoot() bool {
	if f == nil || !f.f.hasExclude {
		return false
	}
	full := ""
	if f.f.hasPathPattern {
		full = FullPath(f.root, ".")
	}
	return f.f.excluded(path.Base(strings.TrimRight(f.root, "/")), full, ".")
}

// Skips reports whether the walk leaves out the entry rel ("/"-separated, relative to the
// root, not "."): -x/-X exclude it, or it is not a directory and -y/-Y do not include it
// (directories are always crawled). Only rel's last name is judged, as the walk judges each
// entry it meets; a caller that descends judges each level. A nil Filter skips nothing.
func (f *Filter) Skips(rel string, isDir bool) bool {
	if f == nil {
		return false
	}
	name := rel[strings.LastIndexByte(rel, '/')+1:]
	full := ""
	if f.f.hasPathPattern {
		full = FullPath(f.root, rel)
	}
	if f.f.hasExclude && f.f.excluded(name, full, rel) {
		return true
	}
	return !isDir && f.f.hasInclude && !f.f.included(name, full, rel)
}

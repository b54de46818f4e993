package verify

import "strings"

// excluder decides which entries Config.Exclude leaves out, with the rules of fpart's -x as
// krsync applies them (fpart's matcher is not exported, and the witness keeps its own copy
// on purpose; verify's tests check that both exclude the same entries): a pattern without
// '/' is matched against the leaf name, a pattern with '/' against the path as fpart prints
// it (the source root as given, then the relative path) and against the relative path alone,
// with fnmatch(3) and FNM_PERIOD (plus FNM_PATHNAME for paths). The same decision, made from
// the relative path, applies to both trees, so an excluded path is neither compared nor
// reported extraneous. The roots themselves are never left out (fpart also matches its root's
// own name, and then walks nothing).
type excluder struct {
	names, paths []string
	root         string // the source root as given, trailing slashes collapsed to one
}

func newExcluder(patterns []string, sourceRoot string) *excluder {
	if len(patterns) == 0 {
		return nil
	}
	x := &excluder{root: sourceRoot}
	for len(x.root) > 1 && strings.HasSuffix(x.root, "//") {
		x.root = x.root[:len(x.root)-1]
	}
	for _, p := range patterns {
		if strings.Contains(p, "/") {
			x.paths = append(x.paths, p)
		} else {
			x.names = append(x.names, p)
		}
	}
	return x
}

// excluded reports whether the entry name at rel (relative to the roots) is left out.
func (x *excluder) excluded(name, rel string) bool {
	if x == nil {
		return false
	}
	for _, p := range x.names {
		if fnmatch(p, name, false) {
			return true
		}
	}
	if len(x.paths) == 0 {
		return false
	}
	full := x.root + "/" + rel
	if strings.HasSuffix(x.root, "/") {
		full = x.root + rel
	}
	for _, p := range x.paths {
		if fnmatch(p, full, true) || fnmatch(p, rel, true) {
			return true
		}
	}
	return false
}

// fnmatch is fnmatch(3) in the C locale with FNM_PERIOD, and FNM_PATHNAME when pathname is
// set, on bytes: '*' and '?' and brackets never match a leading '.' (the first byte, or one
// after '/' with pathname), and with pathname never a '/'. A backslash quotes the next byte;
// an unterminated '[' is a literal '['. Character classes ([:alpha:]) are not supported,
// as in fpart's matcher.
func fnmatch(pattern, s string, pathname bool) bool {
	pi, si := 0, 0
	// Where the last '*' was seen: the pattern position after it and the string position
	// it currently extends to. Only the last star ever needs to be retried.
	retryP, retryS := -1, -1
	for {
		if pi == len(pattern) && si == len(s) {
			return true
		}
		if si < len(s) && pi < len(pattern) {
			c := pattern[pi]
			leading := s[si] == '.' && (si == 0 || (pathname && s[si-1] == '/'))
			slash := pathname && s[si] == '/'
			switch {
			case c == '*':
				if !leading {
					for pi < len(pattern) && pattern[pi] == '*' {
						pi++
					}
					retryP, retryS = pi, si
					continue
				}
			case c == '?':
				if !leading && !slash {
					pi++
					si++
					continue
				}
			case c == '[':
				matched, next, ok := bracket(pattern, pi, s[si])
				switch {
				case !ok: // a literal '['
					if s[si] == '[' {
						pi++
						si++
						continue
					}
				case matched && !leading && !slash:
					pi = next
					si++
					continue
				}
			case c == '\\' && pi+1 < len(pattern):
				if pattern[pi+1] == s[si] {
					pi += 2
					si++
					continue
				}
			default:
				if c == s[si] {
					pi++
					si++
					continue
				}
			}
		} else if si == len(s) {
			// The string is used up: only stars may remain.
			for pi < len(pattern) && pattern[pi] == '*' {
				pi++
			}
			if pi == len(pattern) {
				return true
			}
		}
		// No match here: let the last star take one more byte, if it may.
		if retryP < 0 || retryS >= len(s) || (pathname && s[retryS] == '/') {
			return false
		}
		retryS++
		pi, si = retryP, retryS
	}
}

// bracket matches c against the bracket expression starting at pattern[start] == '['.
// ok is false when the expression has no closing ']'.
func bracket(pattern string, start int, c byte) (matched bool, next int, ok bool) {
	i := start + 1
	negated := false
	if i < len(pattern) && (pattern[i] == '!' || pattern[i] == '^') {
		negated = true
		i++
	}
	for first := true; i < len(pattern); first = false {
		if pattern[i] == ']' && !first {
			return matched != negated, i + 1, true
		}
		lo := pattern[i]
		if lo == '\\' && i+1 < len(pattern) {
			i++
			lo = pattern[i]
		}
		i++
		hi := lo
		if i+1 < len(pattern) && pattern[i] == '-' && pattern[i+1] != ']' {
			i++
			hi = pattern[i]
			if hi == '\\' && i+1 < len(pattern) {
				i++
				hi = pattern[i]
			}
			i++
		}
		if lo <= c && c <= hi {
			matched = true
		}
	}
	return false, 0, false
}

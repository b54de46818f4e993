package kubelet

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// rewriter maps what a container sees (mount paths, its own ports, Service names) onto the
// host, in env values and args. The product gets no test hook: a value that is, or starts
// with, a mount path names the host directory instead, and an address names a loopback port.
type rewriter struct {
	mounts   []pathMap         // longest container path first
	files    map[string]string // exact container path -> host path (the termination log)
	ports    map[int32]int     // the Pod's container ports -> host ports
	services []serviceRoute
}

type pathMap struct{ container, host string }

// serviceRoute rewrites the DNS names of one Service followed by one of its ports.
type serviceRoute struct {
	pattern *regexp.Regexp
	port    func(servicePort int32) (int, bool)
}

func newRewriter() *rewriter {
	return &rewriter{files: map[string]string{}, ports: map[int32]int{}}
}

func (r *rewriter) addMount(container, host string) {
	container = strings.TrimSuffix(container, "/")
	if container == "" {
		return // a mount at / would swallow every path
	}
	r.mounts = append(r.mounts, pathMap{container, host})
	sort.SliceStable(r.mounts, func(i, j int) bool { return len(r.mounts[i].container) > len(r.mounts[j].container) })
}

// addService routes name, name.ns, name.ns.svc and name.ns.svc.cluster.local (with a port,
// or inside an http(s):// URL without one) to the loopback port port returns.
func (r *rewriter) addService(namespace, name string, port func(int32) (int, bool)) {
	fqdn := []string{
		name + "." + namespace + ".svc.cluster.local",
		name + "." + namespace + ".svc",
		name + "." + namespace,
		name,
	}
	for i, n := range fqdn {
		fqdn[i] = regexp.QuoteMeta(n)
	}
	re := regexp.MustCompile(`(^|https?://|[/@=,;])(` + strings.Join(fqdn, "|") + `)(?::([0-9]{1,5}))?`)
	r.services = append(r.services, serviceRoute{pattern: re, port: port})
}

// value rewrites one env value or argument.
func (r *rewriter) value(s string) string {
	if strings.HasPrefix(s, "-") {
		if i := strings.IndexByte(s, '='); i > 0 {
			return s[:i+1] + r.value(s[i+1:])
		}
		return s
	}
	if h, ok := r.files[s]; ok {
		return h
	}
	for _, m := range r.mounts {
		if s == m.container {
			return m.host
		}
		if strings.HasPrefix(s, m.container+"/") {
			return m.host + s[len(m.container):]
		}
	}
	if hp, ok := r.listenPort(s); ok {
		return "127.0.0.1:" + strconv.Itoa(hp)
	}
	for _, svc := range r.services {
		s = svc.rewrite(s)
	}
	return s
}

// listenPort recognises ":8080", "0.0.0.0:8080" and "[::]:8080" for one of the Pod's ports.
func (r *rewriter) listenPort(s string) (int, bool) {
	for _, prefix := range []string{":", "0.0.0.0:", "[::]:"} {
		rest, ok := strings.CutPrefix(s, prefix)
		if !ok {
			continue
		}
		p, err := strconv.ParseInt(rest, 10, 32)
		if err != nil {
			return 0, false
		}
		hp, ok := r.ports[int32(p)]
		return hp, ok
	}
	return 0, false
}

func (svc serviceRoute) rewrite(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range svc.pattern.FindAllStringSubmatchIndex(s, -1) {
		lead := s[m[2]:m[3]]
		end := m[1]
		if end < len(s) && !strings.ContainsRune("/?#,; ", rune(s[end])) {
			continue // part of a longer name, or a port that is not a number
		}
		var port int32
		switch {
		case m[6] >= 0:
			p, err := strconv.ParseInt(s[m[6]:m[7]], 10, 32)
			if err != nil {
				continue
			}
			port = int32(p)
		case lead == "http://":
			port = 80
		case lead == "https://":
			port = 443
		default:
			continue // a bare name is not an address
		}
		hp, ok := svc.port(port)
		if !ok {
			continue
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(lead)
		b.WriteString("127.0.0.1:" + strconv.Itoa(hp))
		last = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// expand replaces $(VAR) references with the container's variables, as Kubernetes does for
// env values, command and args: $$ is a literal $, and an unknown $(VAR) stays as written.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			ref := s[i : i+3+end]
			if v, ok := lookup(s[i+2 : i+2+end]); ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

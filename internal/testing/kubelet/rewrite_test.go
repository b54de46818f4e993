package kubelet

import "testing"

func TestRewriterValue(t *testing.T) {
	rw := newRewriter()
	rw.addMount("/source", "/tmp/src")
	rw.addMount("/dest/", "/tmp/dst")
	rw.addMount("/dest/.krsync-state", "/tmp/state")
	rw.files["/dev/termination-log"] = "/tmp/pod/c.termination-log"
	rw.ports[8080] = 41000
	rw.addService("ns1", "krsync-coordinator", func(p int32) (int, bool) {
		if p == 8080 {
			return 42000, true
		}
		if p == 80 {
			return 42080, true
		}
		return 0, false
	})
	tests := []struct{ name, in, want string }{
		{"mount itself", "/source", "/tmp/src"},
		{"under a mount", "/source/a/b c", "/tmp/src/a/b c"},
		{"not a mount prefix", "/sourcefoo", "/sourcefoo"},
		{"longest mount wins", "/dest/.krsync-state/journal", "/tmp/state/journal"},
		{"shorter mount", "/dest/x", "/tmp/dst/x"},
		{"flag with mount", "--source=/source/x", "--source=/tmp/src/x"},
		{"flag without value", "--verbose", "--verbose"},
		{"termination log", "/dev/termination-log", "/tmp/pod/c.termination-log"},
		{"listen port", ":8080", "127.0.0.1:41000"},
		{"listen any", "0.0.0.0:8080", "127.0.0.1:41000"},
		{"listen flag", "--listen=:8080", "--listen=127.0.0.1:41000"},
		{"other port", ":9090", ":9090"},
		{"service url", "http://krsync-coordinator:8080", "http://127.0.0.1:42000"},
		{"service url path", "http://krsync-coordinator:8080/v1/status", "http://127.0.0.1:42000/v1/status"},
		{"service ns", "http://krsync-coordinator.ns1:8080", "http://127.0.0.1:42000"},
		{"service svc", "krsync-coordinator.ns1.svc:8080", "127.0.0.1:42000"},
		{"service fqdn", "https://krsync-coordinator.ns1.svc.cluster.local:8080/x", "https://127.0.0.1:42000/x"},
		{"service url default port", "http://krsync-coordinator/", "http://127.0.0.1:42080/"},
		{"service other namespace", "http://krsync-coordinator.ns2:8080", "http://krsync-coordinator.ns2:8080"},
		{"service unknown port", "http://krsync-coordinator:9999", "http://krsync-coordinator:9999"},
		{"bare service name", "krsync-coordinator", "krsync-coordinator"},
		{"longer name", "http://krsync-coordinator-2:8080", "http://krsync-coordinator-2:8080"},
		{"plain text", "hello", "hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rw.value(tc.in); got != tc.want {
				t.Errorf("value(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "x", "POD": "p-1"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	tests := []struct{ name, in, want string }{
		{"none", "plain", "plain"},
		{"one", "$(A)", "x"},
		{"inside", "pre-$(POD)-post", "pre-p-1-post"},
		{"unknown stays", "$(NOPE)", "$(NOPE)"},
		{"escaped", "$$(A)", "$(A)"},
		{"unterminated", "$(A", "$(A"},
		{"lone dollar", "a$b$", "a$b$"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := expand(tc.in, lookup); got != tc.want {
				t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

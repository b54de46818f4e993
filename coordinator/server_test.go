package coordinator

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/krsync/krsync/leaseapi"
)

// TestAuthRefusesEveryRoute sends every route without the token, with a wrong one and with
// the wrong scheme, and checks each is refused with 401 and changes nothing.
func TestAuthRefusesEveryRoute(t *testing.T) {
	r := start(t, Config{Walk: staticWalk([][]string{{"a"}, {"b"}}, []string{"."})})
	held := mustLease(t, r.client, "w")
	// The walk goes on concurrently: let it end first, so that the only change the
	// comparison below can see is one the refused requests made.
	eventually(t, "the walk to end", func() bool { return r.c.Status().WalkDone })
	tokenBody := `{"token":"` + held.Token + `"}`
	routes := []struct {
		method, path, body string
	}{
		{"POST", leaseapi.PathLease, `{"worker":"intruder"}`},
		{"POST", "/v1/partitions/1/renew", tokenBody},
		{"POST", "/v1/partitions/1/complete", `{"token":"` + held.Token + `","stats":{"files_transferred":9}}`},
		{"POST", "/v1/partitions/1/fail", `{"token":"` + held.Token + `","error":"x","retryable":false}`},
		{"POST", "/v1/workers/w/release", ``},
		{"GET", leaseapi.PathStatus, ``},
		{"GET", "/v1/no-such-route", ``},
		{"DELETE", leaseapi.PathLease, ``},
	}
	credentials := []struct {
		name, header string
	}{
		{"no token", ""},
		{"wrong token", "Bearer wrong-" + testToken},
		{"token prefix", "Bearer " + testToken[:len(testToken)-1]},
		{"basic scheme", "Basic " + testToken},
		{"bare token", testToken},
	}
	before := r.c.Status()
	for _, rt := range routes {
		for _, cr := range credentials {
			t.Run(rt.method+" "+rt.path+" "+cr.name, func(t *testing.T) {
				req, err := http.NewRequest(rt.method, r.url+rt.path, strings.NewReader(rt.body))
				if err != nil {
					t.Fatal(err)
				}
				if cr.header != "" {
					req.Header.Set("Authorization", cr.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var e leaseapi.ErrorResponse
				if resp.StatusCode != http.StatusUnauthorized || json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error == "" {
					t.Fatalf("status %d, error %q; want 401 with a JSON error", resp.StatusCode, e.Error)
				}
			})
		}
	}
	if after := r.c.Status(); !reflect.DeepEqual(before, after) {
		t.Fatalf("refused requests changed the state:\nbefore %+v\nafter  %+v", before, after)
	}
	if _, err := r.client.Renew(context.Background(), held.Partition, held.Token); err != nil {
		t.Fatalf("the lease was disturbed by refused requests: %v", err)
	}
	for _, path := range []string{leaseapi.PathHealthz, leaseapi.PathReadyz} {
		if code, body := do(t, "GET", r.url+path, "", ""); code != http.StatusOK {
			t.Errorf("GET %s without a token = %d %s; want 200", path, code, body)
		}
	}
}

func TestRequestsAreStrictlyDecoded(t *testing.T) {
	r := start(t, Config{Walk: staticWalk([][]string{{"a"}}, []string{"."})})
	held := mustLease(t, r.client, "w")
	big := `{"worker":"` + strings.Repeat("x", 2<<20) + `"}`
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"unknown field", "POST", leaseapi.PathLease, `{"worker":"w","color":"red"}`, 400},
		{"two values", "POST", leaseapi.PathLease, `{"worker":"w"}{"worker":"w"}`, 400},
		{"trailing garbage", "POST", leaseapi.PathLease, `{"worker":"w"} x`, 400},
		{"not JSON", "POST", leaseapi.PathLease, `worker=w`, 400},
		{"empty body", "POST", leaseapi.PathLease, ``, 400},
		{"wrong type", "POST", leaseapi.PathLease, `{"worker":7}`, 400},
		{"empty worker", "POST", leaseapi.PathLease, `{"worker":""}`, 400},
		{"control character in worker", "POST", leaseapi.PathLease, `{"worker":"a\u0000b"}`, 400},
		{"negative wait", "POST", leaseapi.PathLease, `{"worker":"w","wait_ms":-1}`, 400},
		{"body too large", "POST", leaseapi.PathLease, big, 413},
		{"GET on lease", "GET", leaseapi.PathLease, ``, 405},
		{"POST on status", "POST", leaseapi.PathStatus, `{}`, 405},
		{"non-numeric id", "POST", "/v1/partitions/abc/renew", `{"token":"t"}`, 400},
		{"zero id", "POST", "/v1/partitions/0/renew", `{"token":"t"}`, 400},
		{"huge id", "POST", "/v1/partitions/99999999999999999999999/renew", `{"token":"t"}`, 400},
		{"unknown id", "POST", "/v1/partitions/42/renew", `{"token":"t"}`, 404},
		{"stale token", "POST", "/v1/partitions/1/renew", `{"token":"t"}`, 409},
		{"negative stats", "POST", "/v1/partitions/1/complete", `{"token":"` + held.Token + `","stats":{"files_transferred":-1}}`, 400},
		{"release with a body", "POST", "/v1/workers/x/release", `{"x":1}`, 400},
		{"unknown route", "GET", "/v2/lease", ``, 404},
		{"renew", "POST", "/v1/partitions/1/renew", `{"token":"` + held.Token + `"}`, 200},
		{"wait without waiting", "POST", leaseapi.PathLease, `{"worker":"w2"}`, 200},
		{"release with an empty object", "POST", "/v1/workers/nobody/release", `{}`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, tt.method, r.url+tt.path, testToken, tt.body)
			if code != tt.want {
				t.Fatalf("%s %s = %d %s; want %d", tt.method, tt.path, code, body, tt.want)
			}
			var e leaseapi.ErrorResponse
			if code >= 400 && (json.Unmarshal([]byte(body), &e) != nil || e.Error == "") {
				t.Fatalf("error body %q is not a JSON error", body)
			}
		})
	}
	if st := r.c.Status(); st.Partitions.Leased != 1 || st.Partitions.Done != 0 {
		t.Fatalf("bad requests changed the state: %+v", st.Partitions)
	}
}

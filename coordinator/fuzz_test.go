package coordinator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/krsync/krsync/leaseapi"
)

// fuzzRoutes are the request shapes FuzzHandlers picks from; {id} is replaced by the input.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", leaseapi.PathLease},
	{"POST", leaseapi.PathRenew},
	{"POST", leaseapi.PathComplete},
	{"POST", leaseapi.PathFail},
	{"POST", leaseapi.PathRelease},
	{"GET", leaseapi.PathStatus},
	{"GET", leaseapi.PathHealthz},
	{"PUT", leaseapi.PathLease},
}

// newServingCoordinator is a coordinator whose handler can be called without Run: its
// journal is open and holds a few partitions.
func newServingCoordinator(t testing.TB) *Coordinator {
	t.Helper()
	c, err := New(Config{Source: t.TempDir(), Token: testToken, Walk: staticWalk(nil, nil), MaxWait: time.Millisecond, LeaseTTL: time.Hour}, testLoggerTB(t))
	if err != nil {
		t.Fatal(err)
	}
	j, err := openJournal("", "fuzz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.leases.close()
		_ = j.close()
	})
	var parts []restoredPartition
	for _, paths := range [][]string{{"a"}, {"b", "c"}, {"d"}} {
		p, _, err := j.addPartition(leaseapi.KindFiles, leaseapi.JoinList(paths), int64(len(paths)), 1)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	c.leases.open(j, journalState{parts: parts})
	c.ready.Store(true)
	return c
}

// FuzzHandlers sends arbitrary ids and bodies to every route: the handler must answer with
// a known status code and a JSON error, never panic, and keep the counts consistent.
func FuzzHandlers(f *testing.F) {
	f.Add(uint8(0), "1", []byte(`{"worker":"w","wait_ms":5}`))
	f.Add(uint8(1), "1", []byte(`{"token":"x"}`))
	f.Add(uint8(2), "2", []byte(`{"token":"x","stats":{"files_transferred":1,"bytes_transferred":2,"warnings":["w"]}}`))
	f.Add(uint8(3), "3", []byte(`{"token":"x","error":"e","retryable":true,"failed_paths":["a"]}`))
	f.Add(uint8(4), "w%2Fx", []byte(``))
	f.Add(uint8(5), "", []byte(``))
	f.Add(uint8(0), "", []byte(`{"worker":"w"} {}`))
	f.Add(uint8(1), "-1", []byte(`{"token":"x","extra":1}`))
	c := newServingCoordinator(f)
	h := c.handler()
	// 301/307/308: net/http's own redirect of a non-canonical path (e.g. "//").
	allowed := map[int]bool{301: true, 307: true, 308: true, 200: true, 204: true, 400: true, 401: true, 404: true, 405: true, 409: true, 413: true}
	f.Fuzz(func(t *testing.T, route uint8, id string, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path := strings.NewReplacer("{id}", id, "{worker}", id).Replace(rt.path)
		req, err := http.NewRequest(rt.method, "http://coordinator"+path, bytes.NewReader(body))
		if err != nil {
			return // not a URL: the server would never see it
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("%s %s %q: status %d %s", rt.method, path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e leaseapi.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: error body %q is not a JSON error", rt.method, path, rec.Body)
			}
		}
		// Whatever the worker lease, complete it so that the queue does not run dry.
		var lr leaseapi.LeaseResponse
		if rec.Code == 200 && rt.path == leaseapi.PathLease && json.Unmarshal(rec.Body.Bytes(), &lr) == nil && lr.Lease != nil {
			c.leases.q.release(lr.Lease.Partition, lr.Lease.Token)
		}
		st := c.leases.status()
		p := st.Partitions
		if p.Pending < 0 || p.Leased < 0 || p.Done < 0 || p.Failed < 0 || p.Pending+p.Leased+p.Done+p.Failed != p.Total {
			t.Fatalf("inconsistent counts %+v", p)
		}
	})
}

// FuzzJournalRecords feeds arbitrary bytes to the journal's record decoders and to load:
// corrupt records are refused with an error, never a panic, and good ones round-trip.
func FuzzJournalRecords(f *testing.F) {
	good, _ := encodePartitionRecord(partitionRecord{kind: leaseapi.KindFiles, entries: 2, bytes: 300, list: []byte("a\x00b\x00")})
	f.Add(good, encodeStateRecord(stateRecord{state: stateDone, files: 2, bytes: 300}))
	f.Add([]byte{1, 2, 0x80}, []byte{1, 3, 1, 1, 'e', 'r', 'r'})
	f.Add([]byte{}, []byte{9})
	j, err := openJournal("", "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = j.close() })
	f.Fuzz(func(t *testing.T, partRec, stateRec []byte) {
		if r, err := decodePartitionRecord(partRec); err == nil {
			again, err := encodePartitionRecord(r)
			if err != nil {
				t.Fatalf("decoded %+v does not encode: %v", r, err)
			}
			r2, err := decodePartitionRecord(again)
			if err != nil || r2.kind != r.kind || r2.entries != r.entries || r2.bytes != r.bytes || !bytes.Equal(r2.list, r.list) {
				t.Fatalf("round trip: %+v → %+v, %v", r, r2, err)
			}
		}
		if s, err := decodeStateRecord(stateRec); err == nil {
			if s2, err := decodeStateRecord(encodeStateRecord(s)); err != nil || s2 != s {
				t.Fatalf("round trip: %+v → %+v, %v", s, s2, err)
			}
		}
		err := j.db.Update(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketPartitions).Put(encodeID(1), partRec); err != nil {
				return err
			}
			if len(stateRec) == 0 {
				return tx.Bucket(bucketStates).Delete(encodeID(1))
			}
			return tx.Bucket(bucketStates).Put(encodeID(1), stateRec)
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := j.load()
		if err == nil && (len(st.parts) != 1 || st.parts[0].entries < 0 || st.parts[0].bytes < 0) {
			t.Fatalf("load accepted %+v", st)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("load error is not one line: %v", err)
		}
	})
}

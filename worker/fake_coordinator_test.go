package worker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/krsync/krsync/leaseapi"
)

// fakeCoordinator serves the lease API over real HTTP from a fixed queue of leases, and
// records what the worker reported, lease by lease. The worker's tests use the real
// coordinator where they can (TestRunCopiesPartitionsAndReportsStats, startCoordinator);
// this fake stays for what the real one cannot be made to do on cue:
//   - answer a renewal or a completion with 409 or 404 (a lease lost to expiry or to a
//     restarted coordinator, at the moment the test chooses), or the release route with 404
//     (an older coordinator), or "wait" a set number of times;
//   - hand out exactly the leases a test writes (hostile paths, a symlinked parent, a Mirror
//     or SourceCheck that a real walk of that tree would never produce, fixed tokens);
//   - record every report separately (renewals, each completion's stats, each failure's
//     retryable flag and paths), where the coordinator keeps only sums and given-up partitions.
type fakeCoordinator struct {
	mu        sync.Mutex
	queue     []leaseapi.Lease
	waits     int // answer "wait" this many times before handing out the queue
	leased    int
	renews    map[int64]int
	completes map[int64]leaseapi.TransferStats
	fails     map[int64]leaseapi.FailRequest
	releases  map[string]int
	// renewStatus, when set, answers every renewal with that HTTP status: 409 when the lease
	// expired meanwhile, 404 when a restarted coordinator no longer knows it.
	renewStatus int
	// completeStatus, when set, answers every completion with that HTTP status.
	completeStatus int
	// noRelease answers the release route with 404, like a coordinator without it.
	noRelease bool
	// held is the lease handed out last and not yet settled, for release.
	held *leaseapi.Lease
}

const fakeToken = "secret-token"

func newFakeCoordinator(t *testing.T, leases ...leaseapi.Lease) (*fakeCoordinator, *httptest.Server) {
	t.Helper()
	f := &fakeCoordinator{
		queue:     leases,
		renews:    map[int64]int{},
		completes: map[int64]leaseapi.TransferStats{},
		fails:     map[int64]leaseapi.FailRequest{},
		releases:  map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+leaseapi.PathRelease, f.release)
	mux.HandleFunc("POST "+leaseapi.PathLease, f.lease)
	mux.HandleFunc("POST "+leaseapi.PathRenew, f.renew)
	mux.HandleFunc("POST "+leaseapi.PathComplete, f.complete)
	mux.HandleFunc("POST "+leaseapi.PathFail, f.fail)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+fakeToken {
			writeJSON(w, http.StatusUnauthorized, leaseapi.ErrorResponse{Error: "unauthorized"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeCoordinator) lease(w http.ResponseWriter, r *http.Request) {
	var req leaseapi.LeaseRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Worker == "" {
		writeJSON(w, http.StatusBadRequest, leaseapi.ErrorResponse{Error: "bad lease request"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.waits > 0:
		f.waits--
		writeJSON(w, http.StatusOK, leaseapi.LeaseResponse{State: leaseapi.LeaseWait})
	case len(f.queue) == 0:
		writeJSON(w, http.StatusOK, leaseapi.LeaseResponse{State: leaseapi.LeaseDone})
	default:
		l := f.queue[0]
		f.queue = f.queue[1:]
		f.leased++
		f.held = &l
		writeJSON(w, http.StatusOK, leaseapi.LeaseResponse{State: leaseapi.LeaseGranted, Lease: &l})
	}
}

func (f *fakeCoordinator) renew(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renews[id]++
	if f.renewStatus != 0 {
		writeJSON(w, f.renewStatus, leaseapi.ErrorResponse{Error: "lease no longer held"})
		return
	}
	writeJSON(w, http.StatusOK, leaseapi.RenewResponse{TTLMS: 150})
}

func (f *fakeCoordinator) release(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noRelease {
		writeJSON(w, http.StatusNotFound, leaseapi.ErrorResponse{Error: "no such route"})
		return
	}
	n := 0
	if f.held != nil {
		n, f.held = 1, nil
	}
	f.releases[r.PathValue("worker")] += n
	writeJSON(w, http.StatusOK, leaseapi.ReleaseResponse{Released: n})
}

func (f *fakeCoordinator) complete(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var req leaseapi.CompleteRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, leaseapi.ErrorResponse{Error: "bad complete request"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.completeStatus != 0 {
		writeJSON(w, f.completeStatus, leaseapi.ErrorResponse{Error: "lease no longer held"})
		return
	}
	f.completes[id] = req.Stats
	f.held = nil
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeCoordinator) fail(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var req leaseapi.FailRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, leaseapi.ErrorResponse{Error: "bad fail request"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails[id] = req
	f.held = nil
	w.WriteHeader(http.StatusNoContent)
}

// snapshot returns copies of the recorded reports.
func (f *fakeCoordinator) snapshot() (leased int, renews map[int64]int, completes map[int64]leaseapi.TransferStats, fails map[int64]leaseapi.FailRequest) {
	leased, renews, completes, fails, _ = f.snapshotAll()
	return leased, renews, completes, fails
}

// snapshotAll is snapshot with the releases by worker name.
func (f *fakeCoordinator) snapshotAll() (leased int, renews map[int64]int, completes map[int64]leaseapi.TransferStats, fails map[int64]leaseapi.FailRequest, releases map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	renews, completes, fails = map[int64]int{}, map[int64]leaseapi.TransferStats{}, map[int64]leaseapi.FailRequest{}
	for k, v := range f.renews {
		renews[k] = v
	}
	for k, v := range f.completes {
		completes[k] = v
	}
	for k, v := range f.fails {
		fails[k] = v
	}
	releases = map[string]int{}
	for k, v := range f.releases {
		releases[k] = v
	}
	return f.leased, renews, completes, fails, releases
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// fileLease is a lease of the given paths with a short TTL, so renewals happen quickly.
func fileLease(id int64, paths ...string) leaseapi.Lease {
	return leaseapi.Lease{
		Partition: id, Attempt: 1, Token: "lease-" + strconv.FormatInt(id, 10),
		TTLMS: (150 * time.Millisecond).Milliseconds(), Kind: leaseapi.KindFiles,
		List: leaseapi.JoinList(paths), Entries: int64(len(paths)),
	}
}

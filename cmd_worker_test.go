package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/leaseapi"
)

// runWorker runs `krsync --log-format=json worker args...` in-process and returns the exit
// code and the lines krsync itself printed (not the JSON log).
func runWorker(t *testing.T, args ...string) (int, []string) {
	t.Helper()
	var stdout, stderr testbin.Buffer
	code := run(t.Context(), append([]string{"--log-format=json", "worker"}, args...), Streams{Stdout: &stdout, Stderr: &stderr})
	var said []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "krsync: ") {
			said = append(said, l)
		}
	}
	return code, said
}

// deadCoordinator is a loopback URL where nothing listens: a worker that got past its checks
// would complain about the coordinator instead.
func deadCoordinator(t *testing.T) string { return "http://" + testbin.FreeLoopbackAddr(t) }

func TestWorkerCommandRefusesOverlap(t *testing.T) {
	rsync := testbin.Program(t, "rsync")
	root := t.TempDir()
	src := filepath.Join(root, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(src, filepath.Join(root, "alias")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, source, dest, want string
	}{
		{"same directory", src, src, "inside the source"},
		{"same directory through a symlink", src, filepath.Join(root, "alias"), "inside the source"},
		{"destination inside the source", src, filepath.Join(src, "sub"), "inside the source"},
		{"source inside the destination", filepath.Join(src, "sub"), src, "inside the destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, said := runWorker(t, "--coordinator", deadCoordinator(t), "--give-up-after", "1s", "--token", "x",
				"--rsync", rsync, "--source", tt.source, "--dest", tt.dest)
			if code != 2 || len(said) != 1 || !strings.Contains(said[0], tt.want) {
				t.Errorf("exit %d, said %q; want exit 2 and one line saying %q", code, said, tt.want)
			}
		})
	}
}

// TestWorkerCommandSourceMismatch: a coordinator whose source holds names this worker's
// source lacks (a different mount) makes the worker exit 2 with one line saying so, after
// handing its lease back.
func TestWorkerCommandSourceMismatch(t *testing.T) {
	rsync := testbin.Program(t, "rsync")
	released := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+leaseapi.PathLease, func(w http.ResponseWriter, r *http.Request) {
		l := leaseapi.Lease{Partition: 1, Attempt: 1, Token: "t", TTLMS: 60000, Kind: leaseapi.KindFiles,
			List: leaseapi.JoinList([]string{"data/file"}), Entries: 1, SourceCheck: []string{"data", "README"}}
		_ = json.NewEncoder(w).Encode(leaseapi.LeaseResponse{State: leaseapi.LeaseGranted, Lease: &l})
	})
	mux.HandleFunc("POST "+leaseapi.PathRelease, func(w http.ResponseWriter, r *http.Request) {
		released <- r.PathValue("worker")
		_ = json.NewEncoder(w).Encode(leaseapi.ReleaseResponse{Released: 1})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	src, dest := t.TempDir(), t.TempDir() // an empty mount point, as a wrong subPath gives
	code, said := runWorker(t, "--coordinator", srv.URL, "--token", "x", "--name", "w1", "--rsync", rsync, "--source", src, "--dest", dest)
	want := `krsync: the worker's source does not match the coordinator's: none of "data", "README" is in ` + src +
		` (is --source/the volume mount or subPath the same as the coordinator's?)`
	if code != 2 || len(said) != 1 || said[0] != want {
		t.Errorf("exit %d, said %q; want exit 2 and\n%s", code, said, want)
	}
	select {
	case w := <-released:
		if w != "w1" {
			t.Errorf("released worker %q, want w1", w)
		}
	default:
		t.Errorf("the lease was not handed back")
	}
}

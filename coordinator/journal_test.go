package coordinator

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
)

// TestRestartWalksAfresh stops a coordinator in the middle of its walk with one partition
// done and one leased, restarts it on the same state dir, and checks that the restarted run
// walks afresh: the source may have changed in between (a done partition's files may be
// newer now), so every partition of the new walk is leased, the old run's are forgotten
// (none leased again, no count of theirs kept), and no partition id is given twice.
func TestRestartWalksAfresh(t *testing.T) {
	stateDir := t.TempDir()
	source := t.TempDir()
	ctx := context.Background()

	f := newFeed()
	r1 := start(t, Config{Source: source, StateDir: stateDir, Walk: f.walk})
	f.send("a")
	f.send("b")
	f.send("c")
	la := mustLease(t, r1.client, "w")
	if err := r1.client.Complete(ctx, la.Partition, la.Token, leaseapi.TransferStats{FilesTransferred: 1, BytesTransferred: 7}); err != nil {
		t.Fatal(err)
	}
	lb := mustLease(t, r1.client, "w")
	if got := lb.Paths(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("second lease = %q", got)
	}
	r1.stop(t) // the walk never finished; b is still leased

	// The source changed meanwhile: c is gone, d is new; a and b may hold newer files.
	r2 := start(t, Config{Source: source, StateDir: stateDir, Walk: staticWalk([][]string{{"a"}, {"b"}, {"d"}}, []string{".", "x"})})
	got := drain(t, r2.client, "w")
	var leased []string
	for _, l := range got {
		leased = append(leased, string(l.Kind)+":"+strings.Join(l.Paths(), ","))
		if l.Partition <= lb.Partition {
			t.Errorf("the restarted run gave partition id %d again (the old run gave up to %d)", l.Partition, lb.Partition)
		}
	}
	sort.Strings(leased)
	if want := []string{"dirs:.,x", "files:a", "files:b", "files:d"}; !slices.Equal(leased, want) {
		t.Fatalf("after the restart leased %q; want %q: the new walk's partitions, a again (its files may be newer), c no more", leased, want)
	}
	st, err := r2.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	if st.Partitions.Done != 4 || st.Partitions.Total != 4 || st.EntriesWalked != 3 || st.FilesTransferred != 3 || st.BytesTransferred != 0 {
		t.Fatalf("status after the restart = %+v; want the new walk's 3 entries in 4 partitions, one file each transferred (drain), the old run's counts (7 bytes) gone", st)
	}
}

// TestRerunAfterFailedPartitionsWalksAgain: a run that ended with failed partitions leaves
// no journal, so the next run walks again, finds what was added, and its outcome depends on
// that walk only (issue 9, item 3: the old journal made the rerun skip the walk and end 0
// without the new files).
func TestRerunAfterFailedPartitionsWalksAgain(t *testing.T) {
	stateDir := t.TempDir()
	source := t.TempDir()
	ctx := context.Background()
	r1 := start(t, Config{Source: source, StateDir: stateDir, MaxAttempts: 1, Walk: staticWalk([][]string{{"ok"}, {"full"}}, []string{"."})})
	for range 2 {
		l := mustLease(t, r1.client, "w")
		if l.Paths()[0] == "ok" {
			if err := r1.client.Complete(ctx, l.Partition, l.Token, leaseapi.TransferStats{FilesTransferred: 1}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := r1.client.Fail(ctx, l.Partition, leaseapi.FailRequest{Token: l.Token, Error: "No space left on device", Retryable: true}); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, r1.client, "w")
	if _, err := r1.wait(t); !errors.Is(err, ErrPartitionsFailed) || !errors.Is(err, ErrIncomplete) {
		t.Fatalf("first run: %v; want ErrPartitionsFailed", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, JournalFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the journal of an incomplete run is still there: %v", err)
	}

	walked := false
	walk := staticWalk([][]string{{"ok"}, {"full"}, {"new"}}, []string{"."})
	r2 := start(t, Config{Source: source, StateDir: stateDir, Walk: func(ctx context.Context, h WalkHandler) error {
		walked = true
		return walk(ctx, h)
	}})
	var leased []string
	for _, l := range drain(t, r2.client, "w") {
		leased = append(leased, string(l.Kind)+":"+strings.Join(l.Paths(), ","))
	}
	sort.Strings(leased)
	if want := []string{"dirs:.", "files:full", "files:new", "files:ok"}; !walked || !slices.Equal(leased, want) {
		t.Fatalf("second run walked %v, leased %q; want a new walk and %q", walked, leased, want)
	}
	st, err := r2.wait(t)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if st.Partitions.Done != 4 || st.Partitions.Failed != 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestSecondCoordinatorOnAStateDirIsRefused(t *testing.T) {
	stateDir := t.TempDir()
	held, err := openJournal(stateDir, "run")
	if err != nil {
		t.Fatal(err)
	}
	defer held.close()
	c, err := New(Config{Source: t.TempDir(), Token: "t", StateDir: stateDir, Walk: staticWalk(nil, nil), Identity: "run"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Run(context.Background(), ln)
	if !errors.Is(err, ErrStateDirBusy) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run = %v; want a one-line ErrStateDirBusy", err)
	}
}

func TestJournalRefusesAnotherRun(t *testing.T) {
	stateDir := t.TempDir()
	j, err := openJournal(stateDir, "source=/a")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := openJournal(stateDir, "source=/b"); !errors.Is(err, ErrJournalMismatch) {
		t.Fatalf("open with another identity: %v; want ErrJournalMismatch", err)
	}
	j, err = openJournal(stateDir, "source=/a")
	if err != nil {
		t.Fatalf("reopen with the same identity: %v", err)
	}
	_ = j.close()
}

func TestDirectoryPassIsChunkedInByteOrder(t *testing.T) {
	r := start(t, Config{
		Walk:             staticWalk([][]string{{"f"}}, []string{".", "b", "a", "a/x", "c", "b"}),
		DirsPerPartition: 2,
	})
	got := drain(t, r.client, "w")
	var lists []string
	for _, l := range got {
		lists = append(lists, string(l.Kind)+":"+strings.Join(l.Paths(), ","))
	}
	want := []string{"files:f", "dirs:.,a", "dirs:a/x,b", "dirs:c"}
	if !slices.Equal(lists, want) {
		t.Fatalf("leased %q; want %q", lists, want)
	}
}

// TestJournalSurvivesATornLastCommit damages the meta page of the last commit, as a power
// cut in the middle of writing it would, and checks the journal opens at the commit before.
func TestJournalSurvivesATornLastCommit(t *testing.T) {
	stateDir := t.TempDir()
	j, err := openJournal(stateDir, "torn")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.addPartition(leaseapi.KindFiles, leaseapi.JoinList([]string{"kept"}), 1, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.addPartition(leaseapi.KindFiles, leaseapi.JoinList([]string{"torn"}), 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}

	// bbolt keeps two meta pages and writes them in turn; the one with the higher
	// transaction id is the last commit. Its layout: a 16-byte page header, then magic,
	// version, page size, flags (4 bytes each), root bucket (16), freelist, pgid, txid and
	// checksum (8 each).
	path := filepath.Join(stateDir, JournalFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pageSize := int64(os.Getpagesize())
	txid := func(page int64) uint64 {
		b := make([]byte, 8)
		if _, err := f.ReadAt(b, page*pageSize+16+48); err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint64(b)
	}
	last := int64(0)
	if txid(1) > txid(0) {
		last = 1
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, last*pageSize+16+56); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}

	j, err = openJournal(stateDir, "torn")
	if err != nil {
		t.Fatalf("reopen after a torn commit: %v", err)
	}
	defer j.close()
	st, err := j.load()
	if err != nil {
		t.Fatalf("load after a torn commit: %v", err)
	}
	var lists []string
	for _, p := range st.parts {
		l, err := j.list(p.id)
		if err != nil {
			t.Fatal(err)
		}
		lists = append(lists, leaseapi.SplitList(l)...)
	}
	if !slices.Equal(lists, []string{"kept"}) {
		t.Fatalf("after a torn last commit the journal holds %q; want the commit before it", lists)
	}
}

func TestIdentityDiffNamesWhatChanged(t *testing.T) {
	a := defaultIdentity("/src", "/d1", "", fpart.Options{MaxFiles: 5, Live: true})
	tests := []struct {
		name, other, want string
	}{
		{"destination", defaultIdentity("/src", "/d2", "", fpart.Options{MaxFiles: 5, Live: true}), `destination "/d1" in the journal, "/d2" now`},
		{"fpart options", defaultIdentity("/src", "/d1", "", fpart.Options{MaxFiles: 6, Live: true}), "other fpart options"},
		{"volumes", defaultIdentity("/src", "/d1", "pv-1", fpart.Options{MaxFiles: 5, Live: true}), `volumes "" in the journal, "pv-1" now`},
		{"another shape", "source=/b", "in the journal, source=/b now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := identityDiff(a, tt.other); !strings.Contains(got, tt.want) || strings.Contains(got, "\n") {
				t.Errorf("identityDiff = %q; want it to say %q", got, tt.want)
			}
		})
	}
}

// TestVanishedAfterTheWalk: entries a worker found gone when rsync looked (deleted after the
// walk listed them) count as vanished, not as copied, and not as not copied: walked =
// copied + vanished, and the run is complete.
func TestVanishedAfterTheWalk(t *testing.T) {
	ctx := context.Background()
	r := start(t, Config{Source: t.TempDir(), Walk: staticWalk([][]string{{"a", "b", "c"}, {"d"}}, []string{"."})})
	for range 2 {
		l := mustLease(t, r.client, "w")
		stats := leaseapi.TransferStats{FilesTransferred: 1}
		if len(l.Paths()) == 3 {
			stats = leaseapi.TransferStats{FilesTransferred: 1, Vanished: 2, ExitCode: 23}
		}
		if err := r.client.Complete(ctx, l.Partition, l.Token, stats); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, r.client, "w") // the directory pass
	st, err := r.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	rec := st.Record(time.Second)
	if st.EntriesWalked != 4 || st.EntriesDone != 2 || st.Vanished != 2 || st.VanishedListed != 2 ||
		!rec.Complete || rec.EntriesNotCopied != 0 || rec.Vanished != 2 || rec.EntriesCopied != 2 {
		t.Errorf("status %+v, record %+v; want 4 walked, 2 copied, 2 vanished, none not copied, complete", st, rec)
	}
}

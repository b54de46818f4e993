package coordinator

import (
	"context"
	"os/exec"
	"testing"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/rsyncexec"
)

// TestCompareDest: with CompareDest, a walk over a destination that already equals the
// source hands out no file partition and counts every entry as walked, done and unchanged;
// and so does a run restarted on the journal of an interrupted first copy (whose files are
// in the destination now): it walks afresh, compares, and counts each entry once.
func TestCompareDest(t *testing.T) {
	rsync := testbin.Rsync(t)
	source, dest := t.TempDir(), t.TempDir()
	if _, err := treegen.Generate(source, treegen.Spec{Seed: 77, Files: 300, FanOut: 3, Depth: 2}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(rsync, "-aH", "--numeric-ids", source+"/", dest+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	opts := fpart.Options{Live: true, MaxFiles: 40}
	var parts [][]string
	var entries int64
	if _, err := fpart.Walk(context.Background(), source, opts, fpart.Handler{Partition: func(p fpart.Partition) error {
		var paths []string
		for _, e := range p.Entries {
			paths = append(paths, e.Path)
		}
		parts = append(parts, paths)
		entries += int64(len(p.Entries))
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	dc, err := rsyncexec.OpenDestCompare(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	if len(parts) < 4 {
		t.Fatalf("the tree makes %d partitions; want several", len(parts))
	}

	t.Run("equal destination", func(t *testing.T) {
		r := start(t, Config{Source: source, Dest: dest, Partitioner: opts, CompareDest: dc.Compare})
		for _, l := range drain(t, r.client, "w") {
			if l.Kind == leaseapi.KindFiles {
				t.Errorf("files lease %d of %d entries over an equal destination", l.Partition, l.Entries)
			}
		}
		st, err := r.wait(t)
		if err != nil {
			t.Fatal(err)
		}
		if st.EntriesWalked != entries || st.EntriesDone != entries || st.Unchanged != entries {
			t.Errorf("walked %d, done %d, unchanged %d; want all %d", st.EntriesWalked, st.EntriesDone, st.Unchanged, entries)
		}
	})

	t.Run("resumed walk", func(t *testing.T) {
		stateDir := t.TempDir()
		f := newFeed()
		r1 := start(t, Config{Source: source, Dest: dest, Partitioner: opts, StateDir: stateDir, Walk: f.walk})
		f.send(parts[0]...)
		f.send(parts[1]...)
		l := mustLease(t, r1.client, "w")
		if err := r1.client.Complete(context.Background(), l.Partition, l.Token, leaseapi.TransferStats{}); err != nil {
			t.Fatal(err)
		}
		r1.stop(t) // mid-walk: the destination is complete meanwhile (copied above)

		r2 := start(t, Config{Source: source, Dest: dest, Partitioner: opts, StateDir: stateDir, CompareDest: dc.Compare})
		leased := drain(t, r2.client, "w")
		st, err := r2.wait(t)
		if err != nil {
			t.Fatal(err)
		}
		if st.EntriesWalked != entries || st.EntriesDone != entries || st.Unchanged != entries {
			t.Errorf("after the restart: walked %d, done %d, unchanged %d; want each entry once, left out: %d", st.EntriesWalked, st.EntriesDone, st.Unchanged, entries)
		}
		for _, l := range leased {
			if l.Kind == leaseapi.KindFiles {
				t.Errorf("after the restart a files lease %v: the walk afresh should leave out what the destination holds", l.Paths())
			}
		}
	})
}

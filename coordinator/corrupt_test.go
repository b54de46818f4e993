package coordinator

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/krsync/krsync/leaseapi"
)

// realJournal writes a journal with a few hundred partitions, states and directories in
// stateDir, closes it and returns its bytes.
func realJournal(t testing.TB, stateDir, identity string) []byte {
	t.Helper()
	j, err := openJournal(stateDir, identity)
	if err != nil {
		t.Fatal(err)
	}
	var parts []WalkPartition
	var dirs []string
	for i := range 300 {
		name := strings.Repeat("n", i%40) + string(rune('a'+i%26))
		parts = append(parts, WalkPartition{List: leaseapi.JoinList([]string{"d/" + name, "e/" + name}), Entries: 2, Bytes: int64(i)})
		dirs = append(dirs, "d/"+name)
	}
	got, err := j.addPartitions(leaseapi.KindFiles, parts, dirs)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got[:150] {
		if err := j.setState(p.id, stateRecord{state: stateDone, files: 2, bytes: 9}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.setWalkDone(walkTotals{errors: 1, vanished: 2}); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(stateDir, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openDamaged writes data as the journal of a fresh state dir and opens it as Run does. It
// fails the test on anything but a load or a set-aside journal with a fresh one in its place
// (or a one-line refusal that names the journal); a panic fails it by itself.
func openDamaged(t testing.TB, data []byte, identity string) (loaded bool) {
	t.Helper()
	stateDir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, JournalFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	j, st, aside, err := openAndLoad(stateDir, identity, false)
	if err != nil {
		if errors.Is(err, ErrJournalCorrupt) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), JournalFile) {
			t.Fatalf("openAndLoad = %v; want a load, a set-aside journal, or one line naming the journal", err)
		}
		return false
	}
	defer j.close()
	if aside == "" {
		return true
	}
	if _, err := os.Stat(aside); err != nil {
		t.Fatalf("set aside as %s, but: %v", aside, err)
	}
	if len(st.parts) != 0 || st.walkDone {
		t.Fatalf("after setting the journal aside, the fresh one holds %+v", st)
	}
	// The fresh journal works.
	if _, _, err := j.addPartition(leaseapi.KindFiles, leaseapi.JoinList([]string{"x"}), 1, 1); err != nil {
		t.Fatalf("fresh journal: %v", err)
	}
	return false
}

// TestCorruptJournalIsSetAside: a truncated journal (bbolt: "invalid freelist page") and one
// with random bytes in its pages (bbolt: "assertion failed", or a fault on a bad page number)
// used to end the coordinator in a Go panic (issue 9, item 6). The damaged file is renamed
// journal.db.corrupt-<time> and the run starts afresh; a whole run then completes.
func TestCorruptJournalIsSetAside(t *testing.T) {
	const identity = "corrupt-test"
	good := realJournal(t, t.TempDir(), identity)
	page := os.Getpagesize()
	rng := rand.New(rand.NewPCG(1, 2))
	randomPages := func(from int) []byte {
		b := append([]byte(nil), good...)
		for i := from * page; i < len(b); i++ {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"truncated to two pages", good[:2*page]},
		{"truncated to three pages and a bit", good[:3*page+100]},
		{"truncated mid-file", good[:len(good)/2]},
		{"random bytes after the meta pages", randomPages(2)},
		{"random bytes after four pages", randomPages(4)},
		{"both meta pages zeroed", append(make([]byte, 2*page), good[2*page:]...)},
		{"one byte", []byte{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if loaded := openDamaged(t, tt.data, identity); loaded {
				t.Fatalf("a damaged journal loaded without complaint")
			}
		})
	}

	t.Run("a run on a corrupt journal walks afresh and completes", func(t *testing.T) {
		stateDir := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(stateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stateDir, JournalFile), good[:len(good)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		r := start(t, Config{StateDir: stateDir, Identity: identity, Walk: staticWalk([][]string{{"a"}}, []string{"."})})
		drain(t, r.client, "w")
		if _, err := r.wait(t); err != nil {
			t.Fatalf("Run on a corrupt journal: %v", err)
		}
		aside, _ := filepath.Glob(filepath.Join(stateDir, JournalFile+".corrupt-*"))
		if len(aside) != 1 {
			t.Fatalf("set-aside journals %q; want one", aside)
		}
		if _, err := os.Stat(filepath.Join(stateDir, JournalFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("journal after the clean finish: %v", err)
		}
	})

	t.Run("a corrupt journal in the destination is removed, not kept there", func(t *testing.T) {
		dest := t.TempDir()
		stateDir := filepath.Join(dest, ".krsync-state")
		if err := os.Mkdir(stateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stateDir, JournalFile), good[:len(good)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		r := start(t, Config{StateDir: stateDir, Dest: dest, Identity: identity, Walk: staticWalk([][]string{{"a"}}, []string{"."})})
		drain(t, r.client, "w")
		if _, err := r.wait(t); err != nil {
			t.Fatalf("Run on a corrupt journal: %v", err)
		}
		if left, err := os.ReadDir(stateDir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the state dir is still in the destination after a clean finish (holding %v, %v)", left, err)
		}
	})
}

// FuzzJournalFile damages a real journal file (truncation, overwritten bytes, or a file of
// arbitrary bytes) and opens it as Run does: never a panic; it loads, or is set aside.
func FuzzJournalFile(f *testing.F) {
	const identity = "fuzz-journal"
	good := realJournal(f, f.TempDir(), identity)
	page := os.Getpagesize()
	f.Add(uint8(0), uint32(2*page), []byte{})
	f.Add(uint8(0), uint32(len(good)/2), []byte{})
	f.Add(uint8(1), uint32(2*page+16), []byte{0xff, 0xff, 0xff, 0x7f})
	f.Add(uint8(1), uint32(3*page), []byte("\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x10\x00"))
	f.Add(uint8(1), uint32(16), []byte{0xde, 0xad})
	f.Add(uint8(2), uint32(0), []byte("not a journal"))
	f.Fuzz(func(t *testing.T, op uint8, at uint32, patch []byte) {
		data := append([]byte(nil), good...)
		switch op % 3 {
		case 0:
			data = data[:int(at)%(len(data)+1)]
		case 1:
			off := int(at) % len(data)
			copy(data[off:], patch)
		case 2:
			data = patch
		}
		openDamaged(t, data, identity)
	})
}

// TestCheckJournalPages: a healthy journal passes the page check; one whose branch or bucket
// points back at a page already on the way (the damage that made bbolt's cursor descend
// until the process ran out of memory) does not.
func TestCheckJournalPages(t *testing.T) {
	dir := t.TempDir()
	good := realJournal(t, dir, "check")
	path := filepath.Join(dir, JournalFile)
	if err := checkJournalPages(path); err != nil {
		t.Fatalf("a healthy journal: %v", err)
	}
	bad := filepath.Join(t.TempDir(), JournalFile)
	// The damage FuzzJournalFile found (testdata/fuzz/FuzzJournalFile/dd569eadbe157ba1), made
	// where it matters whatever the file's layout (bbolt's batched commits place pages
	// differently from run to run): every branch page's first child is the page itself.
	damaged := append([]byte(nil), good...)
	page, loops := os.Getpagesize(), 0
	for at := 2 * page; at+pageHeaderSize+pageElementSize <= len(damaged); at += page {
		p := damaged[at:]
		if binary.LittleEndian.Uint16(p[8:]) == branchPageFlag && binary.LittleEndian.Uint16(p[10:]) > 0 {
			copy(p[pageHeaderSize+8:], p[0:8]) // element 0's child = this page's id
			loops++
		}
	}
	if loops == 0 {
		t.Fatal("the journal has no branch page to damage: make realJournal larger")
	}
	if err := os.WriteFile(bad, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkJournalPages(bad); !errors.Is(err, ErrJournalCorrupt) {
		t.Fatalf("the damaged journal: %v; want ErrJournalCorrupt", err)
	}
}

package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/krsync/krsync/leaseapi"
)

// JournalFile is the name of the journal inside the state directory.
const JournalFile = "journal.db"

// journalFormat marks a state directory's journal; a future incompatible format changes it.
const journalFormat = "krsync-journal-1"

// Bucket and key names of the journal (a bbolt file; every commit is fsync'd unless the
// journal is a throwaway one in a temporary directory).
var (
	bucketMeta       = []byte("meta")       // the keys below
	bucketPartitions = []byte("partitions") // id (8 bytes, big endian) → partition record
	bucketStates     = []byte("states")     // id → state record, for done and failed partitions
	bucketHashes     = []byte("hashes")     // sha256(kind, list) → id: a replayed walk skips known partitions
	bucketDirs       = []byte("dirs")       // directory path → nothing; byte order puts parents first

	keyFormat     = []byte("format")
	keyIdentity   = []byte("identity")
	keyWalkDone   = []byte("walk_done")
	keyWalkErrors = []byte("walk_errors")
	keyVanished   = []byte("vanished")
	// keyUnchanged and keyUnchangedBytes count what the walk left out (Config.CompareDest).
	keyUnchanged      = []byte("walk_unchanged")
	keyUnchangedBytes = []byte("walk_unchanged_bytes")
	// keyCreatedDir marks a state directory that krsync created: whichever run finishes
	// removes it (when empty), even when the run that created it was interrupted.
	keyCreatedDir = []byte("created_state_dir")
	keyDirsIssued = []byte("dirs_issued")
)

// ErrStateDirBusy means another coordinator holds the journal of the state directory.
var ErrStateDirBusy = errors.New("state directory is in use by another coordinator")

// ErrJournalMismatch means the state directory belongs to a run with other arguments.
var ErrJournalMismatch = errors.New("state directory belongs to another run")

// journal is the coordinator's durable record: every partition's list, kind and size, the
// state of the ones done or failed, the directories walked, and how far the walk got. What is
// leased is not recorded: after a crash a leased partition is simply pending again.
type journal struct {
	db      *bolt.DB
	path    string
	tempDir string // removed on close: the journal of a run without --state-dir
	// createdDir is the state directory when this journal created it: a clean finish removes
	// it again (when empty), so a state dir on the destination volume leaves no trace there.
	createdDir string
}

// journalState is what a journal holds when it is opened.
type journalState struct {
	parts      []restoredPartition
	walkDone   bool
	walk       walkTotals // when walkDone
	dirsIssued bool
}

// interrupted says the journal holds the work of a run that was stopped before its end.
func (st journalState) interrupted() bool {
	return len(st.parts) > 0 || st.walkDone || st.dirsIssued
}

// reset forgets the work of an interrupted run: its partitions, their states, the
// directories and how far its walk got. The journal keeps its format, the run's identity,
// whether krsync created the state directory, and the partition id sequence (an id is
// never given twice, so a late report of the old run's lease cannot match a new one).
func (j *journal) reset() (err error) {
	defer guardJournal(j.path, "reset", &err)()
	err = j.db.Update(func(tx *bolt.Tx) error {
		seq := tx.Bucket(bucketPartitions).Sequence()
		for _, name := range [][]byte{bucketPartitions, bucketStates, bucketHashes, bucketDirs} {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("delete bucket %s: %w", name, err)
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if err := tx.Bucket(bucketPartitions).SetSequence(seq); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keyWalkDone, keyWalkErrors, keyVanished, keyUnchanged, keyUnchangedBytes, keyDirsIssued} {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("journal %s: forget the interrupted run: %w", j.path, err)
	}
	return nil
}

// ErrJournalCorrupt means the journal file is damaged (bbolt refused it, panicked on it, or a
// record does not decode). openAndLoad sets such a journal aside and starts afresh.
var ErrJournalCorrupt = errors.New("the journal is corrupt")

// openJournal opens (creating it if needed) the journal in stateDir, or a throwaway one in a
// temporary directory when stateDir is empty. identity names the run (source, destination,
// volumes and partitioner options); a journal written for another identity is refused.
func openJournal(stateDir, identity string) (*journal, error) {
	created := false
	if stateDir != "" {
		_, err := os.Lstat(stateDir)
		created = errors.Is(err, fs.ErrNotExist)
	}
	return openJournalAt(stateDir, identity, created)
}

// openJournalAt is openJournal; created says that this run made the state directory.
func openJournalAt(stateDir, identity string, created bool) (j *journal, err error) {
	j = &journal{}
	noSync := false
	if stateDir == "" {
		dir, err := os.MkdirTemp("", "krsync-coordinator-")
		if err != nil {
			return nil, fmt.Errorf("journal: temporary directory: %w", err)
		}
		stateDir, j.tempDir, noSync = dir, dir, true
	} else if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	j.path = filepath.Join(stateDir, JournalFile)
	if fi, err := os.Stat(j.path); err == nil && fi.Size() > 0 {
		if err := checkJournalPages(j.path); err != nil {
			return nil, fmt.Errorf("journal %s: %w", j.path, err)
		}
	}
	// bbolt panics on some damage (a bad freelist page, a failed assertion) and reads its
	// file through mmap, where a bad page number faults: both become errors here.
	defer guardJournal(j.path, "open", &err)()
	db, err := bolt.Open(j.path, 0o600, &bolt.Options{
		Timeout:      2 * time.Second,
		NoSync:       noSync,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		j.removeTemp()
		var pathErr *fs.PathError
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("state dir %s: %w (its journal is locked); stop the other one or use another --state-dir", stateDir, ErrStateDirBusy)
		case errors.As(err, &pathErr):
			return nil, fmt.Errorf("state dir %s: open journal: %w", stateDir, err)
		}
		// Anything else is bbolt refusing the file's contents (invalid, checksum, version).
		return nil, fmt.Errorf("journal %s: %w: %w", j.path, ErrJournalCorrupt, err)
	}
	// Completions from many workers arrive together; one fsync commits a batch of them.
	db.MaxBatchDelay = 2 * time.Millisecond
	j.db = db
	ours, err := j.init(identity, created && j.tempDir == "")
	if err != nil {
		_ = j.closeGuarded()
		return nil, err
	}
	if ours && j.tempDir == "" {
		j.createdDir = stateDir
	}
	return j, nil
}

// guardJournal turns a panic or a memory fault while bbolt reads the journal at path into
// an error wrapping ErrJournalCorrupt. Use it as defer guardJournal(path, what, &err)(): the
// call makes faults panic on this goroutine (bbolt reads its file through mmap), the deferred
// function it returns recovers and puts the fault setting back.
func guardJournal(path, what string, err *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			*err = fmt.Errorf("journal %s: %w: %s: %v", path, ErrJournalCorrupt, what, leaseapi.OneLine(fmt.Sprint(r)))
		}
	}
}

// openAndLoad opens the journal of stateDir and reads it back. A corrupt journal (see
// ErrJournalCorrupt) is renamed to journal.db.corrupt-<time> and a fresh one started: the
// walk runs again and rsync skips what is already copied. aside names the renamed file.
// With removeCorrupt (a state directory inside the destination, which must end equal to the
// source and so cannot keep it) the corrupt journal is removed instead, and aside names it.
func openAndLoad(stateDir, identity string, removeCorrupt bool) (j *journal, st journalState, aside string, err error) {
	created := false
	if stateDir != "" {
		_, err := os.Lstat(stateDir)
		created = errors.Is(err, fs.ErrNotExist)
	}
	j, err = openJournalAt(stateDir, identity, created)
	if err == nil {
		if st, err = j.load(); err == nil {
			return j, st, "", nil
		}
		created = created || j.createdDir != ""
		_ = j.closeGuarded()
	}
	if !errors.Is(err, ErrJournalCorrupt) || stateDir == "" {
		return nil, journalState{}, "", err
	}
	path := filepath.Join(stateDir, JournalFile)
	aside = path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if removeCorrupt {
		// A state directory in the destination that the source does not hold (New checks)
		// and that held krsync's journal is krsync's: whether the lost journal said so or
		// not, a finished run removes it when empty.
		aside, created = path, true
		if rerr := os.Remove(path); rerr != nil {
			return nil, journalState{}, "", fmt.Errorf("%w; could not remove it: %w; remove it and run again", err, rerr)
		}
	} else if rerr := os.Rename(path, aside); rerr != nil {
		return nil, journalState{}, "", fmt.Errorf("%w; could not set it aside: %w; remove it and run again", err, rerr)
	}
	if j, err = openJournalAt(stateDir, identity, created); err != nil {
		return nil, journalState{}, aside, err
	}
	if st, err = j.load(); err != nil {
		_ = j.closeGuarded()
		return nil, journalState{}, aside, err
	}
	return j, st, aside, nil
}

// init creates the buckets of a new journal, or checks the format and identity of an old one.
// created records that krsync made the state directory; ours says whether this journal or an
// earlier run of it did.
func (j *journal) init(identity string, created bool) (ours bool, err error) {
	defer guardJournal(j.path, "init", &err)()
	err = j.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if tx.Bucket(bucketPartitions) != nil {
				return errors.New("not a krsync journal (no format marker)")
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keyFormat, []byte(journalFormat)); err != nil {
				return err
			}
			if err := meta.Put(keyIdentity, []byte(identity)); err != nil {
				return err
			}
		}
		if got := string(meta.Get(keyFormat)); got != journalFormat {
			return fmt.Errorf("journal format %q, want %q", got, journalFormat)
		}
		if got := string(meta.Get(keyIdentity)); got != identity {
			return invalidf("%w (%s): remove %s to start afresh, or use another --state-dir", ErrJournalMismatch, identityDiff(got, identity), j.path)
		}
		if created {
			if err := meta.Put(keyCreatedDir, []byte{1}); err != nil {
				return err
			}
		}
		ours = meta.Get(keyCreatedDir) != nil
		for _, name := range [][]byte{bucketPartitions, bucketStates, bucketHashes, bucketDirs} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("journal %s: %w", j.path, err)
	}
	return ours, nil
}

// closeGuarded closes a journal that may be corrupt.
func (j *journal) closeGuarded() (err error) {
	defer guardJournal(j.path, "close", &err)()
	return j.close()
}

// close closes the journal and removes it when it was a throwaway one.
func (j *journal) close() error {
	err := j.db.Close()
	j.removeTemp()
	if err != nil {
		return fmt.Errorf("journal %s: close: %w", j.path, err)
	}
	return nil
}

func (j *journal) removeTemp() {
	if j.tempDir != "" {
		_ = os.RemoveAll(j.tempDir)
	}
}

// load reads the whole journal back: partitions (without their lists) and their states.
// Failed partitions come back pending: a new run gives them new attempts. It reads every
// page of every bucket, and then lets bbolt check the page structure (tx.Check), so that
// damage shows here, as ErrJournalCorrupt, rather than as a panic later in the run.
func (j *journal) load() (st journalState, err error) {
	defer guardJournal(j.path, "load", &err)()
	err = j.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no meta bucket")
		}
		for _, name := range [][]byte{bucketPartitions, bucketStates, bucketHashes, bucketDirs} {
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("no %s bucket", name)
			}
			// Touch every key and value: a bad page faults or panics now, under the guard.
			var sum byte
			if err := b.ForEach(func(k, v []byte) error {
				for _, x := range [][]byte{k, v} {
					for _, c := range x {
						sum ^= c
					}
				}
				return nil
			}); err != nil {
				return fmt.Errorf("%s bucket: %w", name, err)
			}
			_ = sum
		}
		// A page header's overflow count is not checked by the reads above: pages that
		// claim more than the file holds are damage. (bbolt's own tx.Check is not used: it
		// loops over such counts, and runs on a goroutine of its own, where a fault on a
		// bad page number could not be caught.)
		var alloc int64
		for _, name := range [][]byte{bucketMeta, bucketPartitions, bucketStates, bucketHashes, bucketDirs} {
			s := tx.Bucket(name).Stats()
			alloc += int64(s.BranchAlloc) + int64(s.LeafAlloc)
		}
		if alloc > tx.Size() {
			return fmt.Errorf("pages claim %d bytes, the file holds %d", alloc, tx.Size())
		}
		st.walkDone = meta.Get(keyWalkDone) != nil
		st.dirsIssued = meta.Get(keyDirsIssued) != nil
		for _, c := range []struct {
			key []byte
			to  *int64
		}{{keyWalkErrors, &st.walk.errors}, {keyVanished, &st.walk.vanished},
			{keyUnchanged, &st.walk.unchanged}, {keyUnchangedBytes, &st.walk.unchangedBytes}} {
			if v := meta.Get(c.key); v != nil {
				n, k := binary.Uvarint(v)
				if k <= 0 || n > 1<<62 {
					return fmt.Errorf("meta %s: corrupt value", c.key)
				}
				*c.to = int64(n)
			}
		}
		states := tx.Bucket(bucketStates)
		return tx.Bucket(bucketPartitions).ForEach(func(k, v []byte) error {
			id, err := decodeID(k)
			if err != nil {
				return err
			}
			rec, err := decodePartitionRecord(v)
			if err != nil {
				return fmt.Errorf("partition %d: %w", id, err)
			}
			p := restoredPartition{id: id, kind: rec.kind, entries: rec.entries, bytes: rec.bytes}
			if sv := states.Get(k); sv != nil {
				s, err := decodeStateRecord(sv)
				if err != nil {
					return fmt.Errorf("partition %d: %w", id, err)
				}
				p.done = s.state == stateDone
				p.stats = leaseapi.TransferStats{FilesTransferred: s.files, BytesTransferred: s.bytes}
			}
			st.parts = append(st.parts, p)
			return nil
		})
	})
	if err != nil {
		if errors.Is(err, ErrJournalCorrupt) {
			return journalState{}, err
		}
		return journalState{}, fmt.Errorf("journal %s: %w: %w", j.path, ErrJournalCorrupt, err)
	}
	return st, nil
}

// journaled is a partition as addPartitions left it: new, or found already in the journal.
type journaled struct {
	restoredPartition
	isNew bool
}

// addPartition records one partition; see addPartitions.
func (j *journal) addPartition(kind leaseapi.Kind, list []byte, entries, size int64) (restoredPartition, bool, error) {
	got, err := j.addPartitions(kind, []WalkPartition{{List: list, Entries: entries, Bytes: size}}, nil)
	if err != nil {
		return restoredPartition{}, false, err
	}
	return got[0].restoredPartition, got[0].isNew, nil
}

// addPartitions records partitions of one kind and walked directories in one commit. A
// partition with the same kind and list as one already there (a replayed walk, a re-issued
// directory pass) is not added again: it comes back with its id and state and isNew false.
func (j *journal) addPartitions(kind leaseapi.Kind, parts []WalkPartition, dirs []string) ([]journaled, error) {
	recs := make([][]byte, len(parts))
	for i, p := range parts {
		rec, err := encodePartitionRecord(partitionRecord{kind: kind, entries: p.Entries, bytes: p.Bytes, list: p.List})
		if err != nil {
			return nil, err
		}
		recs[i] = rec
	}
	var out []journaled
	err := j.update(func(tx *bolt.Tx) error {
		out = out[:0] // bbolt may not retry, but keep the function idempotent anyway
		hashes, partsB, states := tx.Bucket(bucketHashes), tx.Bucket(bucketPartitions), tx.Bucket(bucketStates)
		for i, wp := range parts {
			sum := partitionHash(kind, wp.List)
			p := journaled{restoredPartition: restoredPartition{kind: kind, entries: wp.Entries, bytes: wp.Bytes}}
			if v := hashes.Get(sum[:]); v != nil {
				id, err := decodeID(v)
				if err != nil {
					return err
				}
				p.id = id
				if sv := states.Get(v); sv != nil {
					s, err := decodeStateRecord(sv)
					if err != nil {
						return fmt.Errorf("partition %d: %w", id, err)
					}
					p.done = s.state == stateDone
					p.stats = leaseapi.TransferStats{FilesTransferred: s.files, BytesTransferred: s.bytes}
				}
				out = append(out, p)
				continue
			}
			seq, err := partsB.NextSequence()
			if err != nil {
				return err
			}
			p.id, p.isNew = int64(seq), true
			key := encodeID(p.id)
			if err := partsB.Put(key, recs[i]); err != nil {
				return err
			}
			if err := hashes.Put(sum[:], key); err != nil {
				return err
			}
			out = append(out, p)
		}
		dirsB := tx.Bucket(bucketDirs)
		for _, d := range dirs {
			if d == "" || len(d) > bolt.MaxKeySize {
				continue
			}
			if err := dirsB.Put([]byte(d), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("journal: add partitions: %w", err)
	}
	return out, nil
}

// list returns partition id's NUL-terminated list.
func (j *journal) list(id int64) ([]byte, error) {
	var list []byte
	err := j.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPartitions).Get(encodeID(id))
		if v == nil {
			return fmt.Errorf("partition %d: not in the journal", id)
		}
		rec, err := decodePartitionRecord(v)
		if err != nil {
			return fmt.Errorf("partition %d: %w", id, err)
		}
		list = bytes.Clone(rec.list)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return list, nil
}

// addDirs records directories walked (duplicates collapse: the path is the key).
func (j *journal) addDirs(dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	_, err := j.addPartitions(leaseapi.KindFiles, nil, dirs)
	return err
}

// dirChunk returns up to n directories after the key after (from the start when nil) as a
// NUL-terminated list, their number, and the last key, for the next call.
func (j *journal) dirChunk(after []byte, n int) (list []byte, count int64, last []byte, err error) {
	var buf bytes.Buffer
	err = j.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDirs).Cursor()
		var k []byte
		if after == nil {
			k, _ = c.First()
		} else if k, _ = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, _ = c.Next()
		}
		for ; k != nil && count < int64(n); k, _ = c.Next() {
			buf.Write(k)
			buf.WriteByte(0)
			count++
			last = bytes.Clone(k)
		}
		return nil
	})
	if err != nil {
		return nil, 0, nil, fmt.Errorf("journal: read directories: %w", err)
	}
	return buf.Bytes(), count, last, nil
}

// reserveIDs takes n partition ids that no partition of the journal has or will have, for
// partitions kept in memory only (verify leases); it returns the first.
func (j *journal) reserveIDs(n int) (int64, error) {
	var first int64
	err := j.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPartitions)
		seq := b.Sequence()
		first = int64(seq) + 1
		return b.SetSequence(seq + uint64(n))
	})
	if err != nil {
		return 0, fmt.Errorf("journal: reserve %d partition ids: %w", n, err)
	}
	return first, nil
}

// setWalkDone records the end of the walk.
func (j *journal) setWalkDone(t walkTotals) error {
	return j.setMeta("walk done", func(meta *bolt.Bucket) error {
		for _, c := range []struct {
			key []byte
			n   int64
		}{{keyWalkErrors, t.errors}, {keyVanished, t.vanished}, {keyUnchanged, t.unchanged}, {keyUnchangedBytes, t.unchangedBytes}} {
			if err := meta.Put(c.key, binary.AppendUvarint(nil, uint64(min(max(c.n, 0), 1<<62)))); err != nil {
				return err
			}
		}
		return meta.Put(keyWalkDone, []byte{1})
	})
}

// setDirsIssued records that every directory partition is in the journal.
func (j *journal) setDirsIssued() error {
	return j.setMeta("directory pass issued", func(meta *bolt.Bucket) error {
		return meta.Put(keyDirsIssued, []byte{1})
	})
}

func (j *journal) setMeta(what string, put func(*bolt.Bucket) error) error {
	if err := j.update(func(tx *bolt.Tx) error { return put(tx.Bucket(bucketMeta)) }); err != nil {
		return fmt.Errorf("journal: record %s: %w", what, err)
	}
	return nil
}

// setState records partition id done or failed. Concurrent calls share one commit.
func (j *journal) setState(id int64, s stateRecord) error {
	v := encodeStateRecord(s)
	key := encodeID(id)
	if err := j.batch(func(tx *bolt.Tx) error { return tx.Bucket(bucketStates).Put(key, v) }); err != nil {
		return fmt.Errorf("journal: partition %d %s: %w", id, s.state, err)
	}
	return nil
}

// view, update and batch are bbolt's, guarded: load has read every page, but damage bbolt
// only meets when it writes (a bad freelist) becomes an error rather than a crash.
func (j *journal) view(fn func(*bolt.Tx) error) (err error) {
	defer guardJournal(j.path, "read", &err)()
	return j.db.View(fn)
}

func (j *journal) update(fn func(*bolt.Tx) error) (err error) {
	defer guardJournal(j.path, "write", &err)()
	return j.db.Update(fn)
}

func (j *journal) batch(fn func(*bolt.Tx) error) (err error) {
	defer guardJournal(j.path, "write", &err)()
	return j.db.Batch(fn)
}

func partitionHash(kind leaseapi.Kind, list []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(list)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func encodeID(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

func decodeID(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("corrupt partition key %x", b)
	}
	id := int64(binary.BigEndian.Uint64(b))
	if id <= 0 {
		return 0, fmt.Errorf("corrupt partition key %x", b)
	}
	return id, nil
}

// recordVersion is the first byte of every record.
const recordVersion = 1

// partitionRecord is the journal's value for a partition:
// version, kind (1 files, 2 dirs, 3 prune), uvarint entries, uvarint bytes, then the list.
type partitionRecord struct {
	kind    leaseapi.Kind
	entries int64
	bytes   int64
	list    []byte
}

func kindCode(k leaseapi.Kind) (byte, error) {
	switch k {
	case leaseapi.KindFiles:
		return 1, nil
	case leaseapi.KindDirs:
		return 2, nil
	case leaseapi.KindPrune:
		return 3, nil
	}
	return 0, fmt.Errorf("unknown partition kind %q", k)
}

func encodePartitionRecord(r partitionRecord) ([]byte, error) {
	code, err := kindCode(r.kind)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(r.list))
	b = append(b, recordVersion, code)
	b = binary.AppendUvarint(b, uint64(max(r.entries, 0)))
	b = binary.AppendUvarint(b, uint64(max(r.bytes, 0)))
	return append(b, r.list...), nil
}

// decodePartitionRecord parses a partition record; list aliases b.
func decodePartitionRecord(b []byte) (partitionRecord, error) {
	var r partitionRecord
	if len(b) < 2 || b[0] != recordVersion {
		return r, errors.New("corrupt partition record (bad header)")
	}
	switch b[1] {
	case 1:
		r.kind = leaseapi.KindFiles
	case 2:
		r.kind = leaseapi.KindDirs
	case 3:
		r.kind = leaseapi.KindPrune
	default:
		return r, fmt.Errorf("corrupt partition record (kind %d)", b[1])
	}
	rest := b[2:]
	var err error
	if r.entries, rest, err = readCount(rest); err != nil {
		return r, fmt.Errorf("corrupt partition record (entries): %w", err)
	}
	if r.bytes, rest, err = readCount(rest); err != nil {
		return r, fmt.Errorf("corrupt partition record (bytes): %w", err)
	}
	r.list = rest
	return r, nil
}

// stateRecord is the journal's value for a settled partition: version, state (2 done,
// 3 failed), uvarint files transferred, uvarint bytes transferred, then the last error.
type stateRecord struct {
	state partState
	files int64
	bytes int64
	err   string
}

func encodeStateRecord(s stateRecord) []byte {
	b := []byte{recordVersion, byte(s.state)}
	b = binary.AppendUvarint(b, uint64(max(s.files, 0)))
	b = binary.AppendUvarint(b, uint64(max(s.bytes, 0)))
	return append(b, s.err...)
}

func decodeStateRecord(b []byte) (stateRecord, error) {
	var s stateRecord
	if len(b) < 2 || b[0] != recordVersion {
		return s, errors.New("corrupt state record (bad header)")
	}
	s.state = partState(b[1])
	if s.state != stateDone && s.state != stateFailed {
		return s, fmt.Errorf("corrupt state record (state %d)", b[1])
	}
	rest := b[2:]
	var err error
	if s.files, rest, err = readCount(rest); err != nil {
		return s, fmt.Errorf("corrupt state record (files): %w", err)
	}
	if s.bytes, rest, err = readCount(rest); err != nil {
		return s, fmt.Errorf("corrupt state record (bytes): %w", err)
	}
	s.err = string(rest)
	return s, nil
}

// readCount reads one non-negative uvarint that fits an int64.
func readCount(b []byte) (int64, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, errors.New("truncated number")
	}
	if n > 1<<62 {
		return 0, nil, errors.New("number out of range")
	}
	return int64(n), b[k:], nil
}

// identityParts are the fields of a run identity (see defaultIdentity), in order, with what
// a user calls them.
var identityParts = []struct{ key, name string }{
	{"source=", "source"}, {"dest=", "destination"}, {"volumes=", "volumes"}, {"fpart=", "fpart options"},
	{"mode=", "mode"}, // only in the identity of a --mirror run (see mirrorMode); optional
}

// identityDiff says in a few words how the journal's run differs from this one:
// `destination "/a" in the journal, "/b" now`. Identities of another shape (tests, Config.Identity)
// are shown whole.
func identityDiff(journal, this string) string {
	a, b := splitIdentity(journal), splitIdentity(this)
	if a == nil || b == nil {
		return fmt.Sprintf("%s in the journal, %s now", leaseapi.OneLine(journal), leaseapi.OneLine(this))
	}
	var diffs []string
	for i, p := range identityParts {
		if a[i] != b[i] {
			if p.key == "fpart=" {
				diffs = append(diffs, "other fpart options")
				continue
			}
			diffs = append(diffs, fmt.Sprintf("%s %s in the journal, %s now", p.name, leaseapi.OneLine(a[i]), leaseapi.OneLine(b[i])))
		}
	}
	return strings.Join(diffs, "; ")
}

// splitIdentity cuts an identity into the values of identityParts, or returns nil.
func splitIdentity(id string) []string {
	var values []string
	last := len(identityParts) - 1
	for i, p := range identityParts {
		rest, ok := strings.CutPrefix(id, p.key)
		if !ok && i == last && id == "" {
			values = append(values, "") // the optional mode is absent
			break
		}
		if !ok {
			return nil
		}
		end := len(rest)
		switch {
		case i+1 == last:
			// The optional last part: its key is searched from the end, since the fpart
			// options before it may hold any text.
			if end = strings.LastIndex(rest, " "+identityParts[last].key); end < 0 {
				end = len(rest)
			}
		case i+1 < last:
			end = strings.Index(rest, " "+identityParts[i+1].key)
			if end < 0 {
				return nil
			}
		}
		values = append(values, rest[:end])
		id = strings.TrimPrefix(rest[end:], " ")
	}
	return values
}

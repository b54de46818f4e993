package slowfs

import (
	"encoding/json"
	"sync/atomic"
)

// Op is a kind of FUSE request that slowfs counts.
type Op int

// The requests slowfs counts. Those before firstUndelayed cost Config.Delay each.
const (
	OpLookup Op = iota
	OpGetattr
	OpSetattr
	OpStatx
	OpAccess
	OpOpen
	OpCreate
	OpMkdir
	OpMknod
	OpSymlink
	OpLink
	OpReadlink
	OpRename
	OpUnlink
	OpRmdir
	OpOpendir
	OpReaddir
	// Requests below are counted but not delayed: data (delayed per MiB instead), and
	// bookkeeping an NFS client does without a round trip or in the background.
	OpRead
	OpWrite
	OpFlush
	OpFsync
	OpRelease
	OpReleasedir
	OpForget
	OpXattr
	OpStatfs
	numOps
)

const firstUndelayed = OpRead

var opNames = [numOps]string{
	OpLookup: "lookup", OpGetattr: "getattr", OpSetattr: "setattr", OpStatx: "statx",
	OpAccess: "access", OpOpen: "open", OpCreate: "create", OpMkdir: "mkdir",
	OpMknod: "mknod", OpSymlink: "symlink", OpLink: "link", OpReadlink: "readlink",
	OpRename: "rename", OpUnlink: "unlink", OpRmdir: "rmdir", OpOpendir: "opendir",
	OpReaddir: "readdir", OpRead: "read", OpWrite: "write", OpFlush: "flush",
	OpFsync: "fsync", OpRelease: "release", OpReleasedir: "releasedir",
	OpForget: "forget", OpXattr: "xattr", OpStatfs: "statfs",
}

// String is the name used in Counts and in the JSON output.
func (o Op) String() string { return opNames[o] }

// Delayed reports whether each request of this kind costs Config.Delay.
func (o Op) Delayed() bool { return o < firstUndelayed }

// Counts is a snapshot of the counters.
type Counts struct {
	Ops [numOps]uint64
	// BytesRead is what the kernel asked to read (a short read at the end of a file counts
	// in full), BytesWritten what it wrote.
	BytesRead, BytesWritten uint64
	// SleptNanos is the time the request handlers spent sleeping, summed over requests
	// (measured, so at least the delays asked for).
	SleptNanos uint64
}

// Get returns the count of one kind of request.
func (c Counts) Get(o Op) uint64 { return c.Ops[o] }

// Metadata is the number of delayed (metadata) requests.
func (c Counts) Metadata() uint64 {
	var n uint64
	for o := range firstUndelayed {
		n += c.Ops[o]
	}
	return n
}

// Sub returns c minus an earlier snapshot.
func (c Counts) Sub(before Counts) Counts {
	d := Counts{BytesRead: c.BytesRead - before.BytesRead, BytesWritten: c.BytesWritten - before.BytesWritten,
		SleptNanos: c.SleptNanos - before.SleptNanos}
	for o := range numOps {
		d.Ops[o] = c.Ops[o] - before.Ops[o]
	}
	return d
}

// Add returns the sum of two snapshots (for example of a source and a destination mount).
func (c Counts) Add(o2 Counts) Counts {
	s := Counts{BytesRead: c.BytesRead + o2.BytesRead, BytesWritten: c.BytesWritten + o2.BytesWritten,
		SleptNanos: c.SleptNanos + o2.SleptNanos}
	for o := range numOps {
		s.Ops[o] = c.Ops[o] + o2.Ops[o]
	}
	return s
}

// MarshalJSON writes the counts as {"ops": {"lookup": n, ...}, "metadata_ops": n, ...}.
func (c Counts) MarshalJSON() ([]byte, error) {
	ops := make(map[string]uint64, numOps)
	for o := range numOps {
		ops[o.String()] = c.Ops[o]
	}
	return json.Marshal(struct {
		Ops          map[string]uint64 `json:"ops"`
		Metadata     uint64            `json:"metadata_ops"`
		BytesRead    uint64            `json:"bytes_read"`
		BytesWritten uint64            `json:"bytes_written"`
		SleptNanos   uint64            `json:"slept_ns"`
	}{ops, c.Metadata(), c.BytesRead, c.BytesWritten, c.SleptNanos})
}

// counters are the live, atomically updated counts of one mount.
type counters struct {
	ops                     [numOps]atomic.Uint64
	bytesRead, bytesWritten atomic.Uint64
	sleptNanos              atomic.Uint64
}

func (c *counters) snapshot() Counts {
	var s Counts
	for o := range numOps {
		s.Ops[o] = c.ops[o].Load()
	}
	s.BytesRead, s.BytesWritten = c.bytesRead.Load(), c.bytesWritten.Load()
	s.SleptNanos = c.sleptNanos.Load()
	return s
}

// NonZero returns the counts of the kinds of request that occurred, by name.
func (c Counts) NonZero() map[string]uint64 {
	m := map[string]uint64{}
	for o := range numOps {
		if c.Ops[o] > 0 {
			m[o.String()] = c.Ops[o]
		}
	}
	return m
}

package leaseapi

import (
	"bytes"
	"time"
)

// Routes of API version 1. {id} is a partition id.
const (
	PathLease    = "/v1/lease"                    // POST LeaseRequest -> LeaseResponse
	PathRenew    = "/v1/partitions/{id}/renew"    // POST RenewRequest -> RenewResponse
	PathComplete = "/v1/partitions/{id}/complete" // POST CompleteRequest -> 204
	PathFail     = "/v1/partitions/{id}/fail"     // POST FailRequest -> 204
	PathRelease  = "/v1/workers/{worker}/release" // POST -> ReleaseResponse: hand back a gone worker's leases
	PathStatus   = "/v1/status"                   // GET -> Status
	PathMetrics  = "/metrics"                     // GET, Prometheus text format (bearer token)
	PathHealthz  = "/healthz"                     // GET, no auth
	PathReadyz   = "/readyz"                      // GET, no auth
)

// Kind says what a partition asks the worker to do.
type Kind string

const (
	// KindFiles: copy the listed entries (files, symlinks, empty directories).
	KindFiles Kind = "files"
	// KindDirs: the final metadata pass; set modes, owners and mtimes of the listed directories
	// after every file partition is done (writing files into a directory changes its mtime).
	KindDirs Kind = "dirs"
	// KindPrune: with --mirror, delete what the listed destination directories hold and the
	// source does not (see Mirror); issued once the walk is done, before the directory pass.
	KindPrune Kind = "prune"
	// KindVerify: with --verify, compare the listed directories of the source and the
	// destination, one level deep (see Verify); issued once the directory pass has settled,
	// and completed with a VerifyReport. A worker that does not know a kind fails its lease.
	KindVerify Kind = "verify"
)

// LeaseRequest asks for a partition. Wait bounds the long poll while the walk is still running.
type LeaseRequest struct {
	Worker string `json:"worker"`
	WaitMS int64  `json:"wait_ms,omitempty"`
}

// LeaseState is the outcome of a lease request.
type LeaseState string

const (
	// LeaseGranted: Lease holds a partition for this worker.
	LeaseGranted LeaseState = "granted"
	// LeaseWait: nothing to hand out yet but the work is not finished; ask again.
	LeaseWait LeaseState = "wait"
	// LeaseDone: every partition is done or failed; the worker exits 0.
	LeaseDone LeaseState = "done"
)

// LeaseResponse answers a LeaseRequest.
type LeaseResponse struct {
	State LeaseState `json:"state"`
	Lease *Lease     `json:"lease,omitempty"`
}

// Lease is one partition handed to one worker until TTL passes without a renewal.
type Lease struct {
	Partition int64  `json:"partition"`
	Attempt   int    `json:"attempt"`
	Token     string `json:"token"`
	TTLMS     int64  `json:"ttl_ms"`
	Kind      Kind   `json:"kind"`
	// List is the partition's paths relative to the source root, each ended by a NUL byte
	// (rsync --from0). Names may be any bytes, so it travels as base64 in JSON.
	List    []byte `json:"list"`
	Entries int64  `json:"entries"`
	Bytes   int64  `json:"bytes"`
	// TempDir names, relative to the destination root, the directory of this run where rsync
	// keeps its temporary files (rsync --temp-dir, one subdirectory per attempt): krsync
	// creates it and removes it whole, and removes nothing else in the destination. Empty:
	// rsync's default (a temporary file beside each file it writes).
	TempDir string `json:"temp_dir,omitempty"`
	// RemoveTempDir asks the worker to remove TempDir before this partition's rsync runs. The
	// coordinator sets it on the directory-metadata partition that holds the root: by then
	// every file partition has settled, and the root's mtime is set after the removal.
	RemoveTempDir bool `json:"remove_temp_dir,omitempty"`
	// SourceCheck are a few names at the top of the source root that the coordinator walked.
	// A worker whose source holds none of them is not looking at the same tree (a wrong mount,
	// a subPath on one side only) and stops before copying anything.
	SourceCheck []string `json:"source_check,omitempty"`
	// Mirror, set on every lease of a --mirror run, says what the worker may delete.
	Mirror *Mirror `json:"mirror,omitempty"`
	// Verify, set on every verify lease, says how to compare.
	Verify *Verify `json:"verify,omitempty"`
}

// Verify is how a verify lease compares its directories (krsync's package verify, the
// independent witness: no code of the copy path).
type Verify struct {
	// Checksum also compares the contents of regular files of equal size.
	Checksum bool `json:"checksum,omitempty"`
	// Exclude are fpart -x patterns (the walk's, and krsync's own names in the destination):
	// matching entries are neither compared nor reported.
	Exclude []string `json:"exclude,omitempty"`
	// WalkRoot is the source root as the walk named it, which patterns with '/' match.
	WalkRoot string `json:"walk_root,omitempty"`
}

// MaxVerifyListed bounds the differences one verify lease lists in its report; all of them
// are counted.
const MaxVerifyListed = 100

// VerifyReport is what a verify lease found, in the completion's TransferStats.
type VerifyReport struct {
	Dirs         int64 `json:"dirs"`          // directories compared on both sides
	Entries      int64 `json:"entries"`       // source entries compared
	ContentBytes int64 `json:"content_bytes"` // bytes compared on each side (Checksum)
	// Differences counts every difference found, ByKind by kind; Listed are the first
	// MaxVerifyListed of them. Hard-link grouping is not judged here: see Links.
	Differences int64              `json:"differences"`
	ByKind      map[string]int64   `json:"by_kind,omitempty"`
	Listed      []VerifyDifference `json:"listed,omitempty"`
	// Links are the names whose inode has more than one link on either side: the
	// coordinator, where every lease's names meet, compares the grouping across the tree.
	Links []VerifyLink `json:"links,omitempty"`
}

// VerifyDifference is one difference. Names may be any bytes: they travel as base64.
type VerifyDifference struct {
	Path   []byte `json:"path"`
	Kind   string `json:"kind"`
	Source []byte `json:"source,omitempty"`
	Dest   []byte `json:"dest,omitempty"`
}

// VerifyLink is a name whose inode has more than one link on at least one side: its inode
// on each side where it counts in that side's grouping (nil where not), and whether its
// grouping is compared (the same type on both sides).
type VerifyLink struct {
	Path     []byte       `json:"path"`
	Source   *VerifyInode `json:"source,omitempty"`
	Dest     *VerifyInode `json:"dest,omitempty"`
	Compared bool         `json:"compared,omitempty"`
}

// VerifyInode identifies an inode within one tree: Dev is 0 for the device of the tree's
// root (mounts of one volume on different nodes differ in st_dev, not in inode numbers).
type VerifyInode struct {
	Dev uint64 `json:"dev,omitempty"`
	Ino uint64 `json:"ino"`
}

// Mirror makes the destination an exact copy of the source: a prune lease deletes the
// entries of its listed destination directories that the source does not hold (looked up
// in the source right before each deletion), and a files lease first removes a destination
// directory where the source now has a file, symlink or special file. Nothing the walk
// leaves out is deleted, nor a Keep path.
type Mirror struct {
	// Exclude, ExcludeFold, Include and IncludeFold are the walk's fpart -x, -X, -y and -Y
	// patterns: a destination entry the walk would have left out is neither copied nor
	// deleted (rsync --delete without --delete-excluded).
	Exclude     []string `json:"exclude,omitempty"`
	ExcludeFold []string `json:"exclude_fold,omitempty"`
	Include     []string `json:"include,omitempty"`
	IncludeFold []string `json:"include_fold,omitempty"`
	// WalkRoot is the source root as the coordinator's walk named it: fpart matches a
	// pattern with a '/' against it followed by the relative path (and against the relative
	// path alone).
	WalkRoot string `json:"walk_root,omitempty"`
	// Keep are paths relative to the destination root that krsync itself owns while the run
	// lasts (its temporary directory, a state directory in the destination): never deleted,
	// nor the directories above them.
	Keep []string `json:"keep,omitempty"`
	// KeepPrefix are name prefixes at the top of the destination that krsync owns while the
	// run lasts: the temporary directory of each rsync run, TEMPDIR.LABEL-RANDOM. A top-level
	// name that starts with one of them is never deleted.
	KeepPrefix []string `json:"keep_prefix,omitempty"`
	// DryRun: copy nothing, delete nothing, only report what would be deleted.
	DryRun bool `json:"dry_run,omitempty"`
}

// TTL is the lease's time to live.
func (l Lease) TTL() time.Duration { return time.Duration(l.TTLMS) * time.Millisecond }

// Paths splits List into its paths.
func (l Lease) Paths() []string { return SplitList(l.List) }

// JoinList builds a NUL-terminated list from paths.
func JoinList(paths []string) []byte {
	var b bytes.Buffer
	for _, p := range paths {
		b.WriteString(p)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// SplitList splits a NUL-terminated list into its paths.
func SplitList(list []byte) []string {
	var paths []string
	for len(list) > 0 {
		i := bytes.IndexByte(list, 0)
		if i < 0 {
			paths = append(paths, string(list))
			break
		}
		paths = append(paths, string(list[:i]))
		list = list[i+1:]
	}
	return paths
}

// RenewRequest extends a lease.
type RenewRequest struct {
	Token string `json:"token"`
}

// RenewResponse gives the lease's new time to live.
type RenewResponse struct {
	TTLMS int64 `json:"ttl_ms"`
}

// TransferStats are rsync's --stats numbers for one partition.
type TransferStats struct {
	FilesTransferred int64 `json:"files_transferred"`
	BytesTransferred int64 `json:"bytes_transferred"`
	// Deleted counts the destination entries deleted (with --mirror; in a dry run, the ones
	// that would have been).
	Deleted int64 `json:"deleted,omitempty"`
	// Warnings are rsync's non-fatal complaints (e.g. exit 24, vanished files).
	Warnings []string `json:"warnings,omitempty"`
	// Unchanged counts the listed entries left out of rsync because the destination already
	// equalled the source (rsyncexec.Result.Unchanged). Absent from older workers: 0.
	Unchanged int64 `json:"unchanged,omitempty"`
	// Vanished counts the listed entries that were gone from the source when rsync looked
	// (deleted after the walk listed them): not copied, and not failures. Absent from older
	// workers: 0.
	Vanished int64 `json:"vanished,omitempty"`
	// ExitCode is rsync's exit code of a successful run (0, or 24 for vanished files).
	// Absent from older workers: 0.
	ExitCode int `json:"exit_code,omitempty"`
	// Verify is the outcome of a verify lease (required for one: a completion without it
	// comes from a worker that does not know verify leases, and is refused).
	Verify *VerifyReport `json:"verify,omitempty"`
}

// CompleteRequest reports a partition copied.
type CompleteRequest struct {
	Token string        `json:"token"`
	Stats TransferStats `json:"stats"`
}

// FailRequest reports a partition not copied.
type FailRequest struct {
	Token     string `json:"token"`
	Error     string `json:"error"`
	Retryable bool   `json:"retryable"`
	// FailedPaths are the paths rsync named as not copied, when it named them.
	FailedPaths []string `json:"failed_paths,omitempty"`
	// ExitCode is rsync's exit code (-1: killed by a signal) when rsync ran and failed; nil
	// when it did not run (or from an older worker).
	ExitCode *int `json:"exit_code,omitempty"`
}

// ReleaseResponse says how many leases of a gone worker were handed back.
type ReleaseResponse struct {
	Released int `json:"released"`
}

// PartitionCounts counts partitions by state.
type PartitionCounts struct {
	Pending int64 `json:"pending"`
	Leased  int64 `json:"leased"`
	Done    int64 `json:"done"`
	Failed  int64 `json:"failed"`
	Total   int64 `json:"total"`
}

// FailedPartition is a partition given up after its last attempt.
type FailedPartition struct {
	Partition   int64    `json:"partition"`
	Attempts    int      `json:"attempts"`
	Error       string   `json:"error"`
	FailedPaths []string `json:"failed_paths,omitempty"`
}

// Status is the coordinator's progress: the numbers behind the progress bar and `krsync status`.
type Status struct {
	Partitions       PartitionCounts `json:"partitions"`
	EntriesWalked    int64           `json:"entries_walked"`
	BytesWalked      int64           `json:"bytes_walked"`
	EntriesDone      int64           `json:"entries_done"`
	BytesDone        int64           `json:"bytes_done"`
	FilesTransferred int64           `json:"files_transferred"`
	BytesTransferred int64           `json:"bytes_transferred"`
	WalkErrors       int64           `json:"walk_errors"`
	// Vanished counts entries deleted from the source while krsync ran: gone when the walk
	// looked at them (not walked), or listed by the walk and gone when rsync looked
	// (VanishedListed of them: walked, not copied). Reported, not an error, like rsync's
	// "vanished" files.
	Vanished       int64 `json:"vanished"`
	VanishedListed int64 `json:"vanished_listed,omitempty"`
	// Deleted counts the destination entries --mirror deleted (in a dry run: would delete).
	Deleted int64 `json:"deleted"`
	// Mirror and DryRun say how the run was asked to run (--mirror, --dry-run).
	Mirror    bool              `json:"mirror,omitempty"`
	DryRun    bool              `json:"dry_run,omitempty"`
	WalkDone  bool              `json:"walk_done"`
	Finished  bool              `json:"finished"`
	Failed    []FailedPartition `json:"failed,omitempty"`
	StartedAt time.Time         `json:"started_at"`
	// Unchanged counts the entries of done file partitions (EntriesDone) that rsync was not
	// even asked about: the destination already equalled the source (TransferStats.Unchanged).
	Unchanged int64 `json:"unchanged"`
	// Verify is the comparison of a --verify run (nil without --verify).
	Verify *VerifyProgress `json:"verify,omitempty"`
}

// Verify states: the comparison waits for the copy, runs, is done, or was skipped because
// the copy is incomplete (a comparison would only list what was not copied).
const (
	VerifyWaiting = "waiting"
	VerifyRunning = "running"
	VerifyDone    = "done"
	VerifySkipped = "skipped"
)

// VerifyProgress is how far the comparison of a --verify run got and what it found.
type VerifyProgress struct {
	State    string `json:"state"`
	Checksum bool   `json:"checksum,omitempty"`
	// Dirs is how many directories verify leases hold; DirsDone how many were compared.
	Dirs     int64 `json:"dirs"`
	DirsDone int64 `json:"dirs_done"`
	Entries  int64 `json:"entries"`
	// ContentBytes are the bytes compared on each side (Checksum).
	ContentBytes int64 `json:"content_bytes,omitempty"`
	// Differences counts every difference found so far (hard-link grouping once the
	// leases are all done), ByKind by kind.
	Differences int64            `json:"differences"`
	ByKind      map[string]int64 `json:"by_kind,omitempty"`
}

// ErrorResponse is the body of every 4xx and 5xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

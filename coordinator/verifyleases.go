package coordinator

import (
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"

	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/verify"
)

// This file is the comparison of a --verify run (Config.Verify), spread over the workers
// like the copy: once the directory pass has settled, every directory the walk kept goes
// into a verify lease (leaseapi.KindVerify), whose worker compares those directories one
// level deep with package verify (verify.Dirs) and reports what differs, with the names it
// met whose inodes have more than one link. The grouping of hard links is a property of the
// whole tree, so it is judged here, where every lease's names meet, once every verify lease
// has settled (verify.HardLinkDifferences). Verify leases are not journaled: the lists are
// ranges of the journal's directories, and what they found lives in memory; a restarted
// coordinator compares again from the start.

// DefaultVerifyDirsPerPartition is how many directories one verify lease holds: each costs
// the worker two directory reads and an fstatat per entry on each side (and reading the
// files with Checksum), against a few milliseconds of lease traffic per lease, so a lease
// holds many; but few enough that the leases spread over the workers, the last ones end
// together, and an expired one costs little to redo. (On the 100,000-file bench tree, 1,111
// directories: 100 and 500 per lease took about as long, within the noise of a shared
// 2-core machine; 500 leaves 3 leases to 2 workers.)
const DefaultVerifyDirsPerPartition = 250

// maxCompleteBodyBytes bounds a completion: a verify lease's report names every
// multiply-linked entry of its directories.
const maxCompleteBodyBytes = 64 << 20

// VerifyConfig asks for a comparison of the destination with the source after the copy.
type VerifyConfig struct {
	// Checksum also compares the contents of regular files of equal size.
	Checksum bool
	// DirsPerPartition is how many directories go in one verify lease (default
	// DefaultVerifyDirsPerPartition).
	DirsPerPartition int
	// Report, when set, receives the differences as they are found, one call at a time:
	// each verify lease's listed ones (at most leaseapi.MaxVerifyListed of a lease; all are
	// counted in the status) and, at the end, every hard-link difference.
	Report func(verify.Difference)
}

// verifyPass is the state of the comparison: which partitions are verify leases and which
// directories they hold, and what their reports added up to.
type verifyPass struct {
	cfg  VerifyConfig
	spec leaseapi.Verify

	// mu serialises the completions of verify leases with each other and with the final
	// judgement of the hard links (judge), which must see every report.
	mu       sync.Mutex
	ranges   map[int64]dirRange
	progress leaseapi.VerifyProgress
	links    []verify.LinkName
}

// dirRange is a verify lease's directories: n of the journal's, after the key after.
type dirRange struct {
	after []byte
	n     int
}

// newVerifyPass is the comparison of cfg's run, or nil without Verify.
func newVerifyPass(cfg Config) *verifyPass {
	if cfg.Verify == nil {
		return nil
	}
	v := &verifyPass{
		cfg: *cfg.Verify,
		spec: leaseapi.Verify{
			Checksum: cfg.Verify.Checksum,
			Exclude:  append(append([]string(nil), cfg.Partitioner.Exclude...), ownNames(cfg.Source, cfg.Dest, cfg.StateDir)...),
			WalkRoot: cfg.Source,
		},
		ranges:   map[int64]dirRange{},
		progress: leaseapi.VerifyProgress{State: leaseapi.VerifyWaiting, Checksum: cfg.Verify.Checksum},
	}
	if v.cfg.DirsPerPartition <= 0 {
		v.cfg.DirsPerPartition = DefaultVerifyDirsPerPartition
	}
	return v
}

// checkVerify refuses what the comparison cannot honour: verify applies fpart's -x patterns
// only, so a walk filtered by -X, -y or -Y would be reported different; a dry run copies
// nothing to compare.
func checkVerify(cfg Config) error {
	if cfg.Verify == nil {
		return nil
	}
	opts := cfg.Partitioner
	if len(opts.ExcludeFold)+len(opts.Include)+len(opts.IncludeFold) > 0 {
		return invalidf("--verify: the fpart options have -X, -y or -Y, which krsync verify cannot apply (it takes -x patterns only); drop --verify, or use -x")
	}
	if cfg.DryRun {
		return invalidf("--verify with --dry-run: a dry run copies nothing, there is nothing to compare")
	}
	return nil
}

// ownNames are exclude patterns for what krsync itself may leave in the destination: a
// run's temporary directory at the top (removed at the end of a complete run, but a
// concurrent run of another identity may hold one), and the state directory when it lies
// in the destination (it keeps a generated token). They are path patterns anchored at the
// source root as verify matches them (SOURCE/rel), with the root's glob characters quoted.
func ownNames(source, dest, stateDir string) []string {
	root := globQuote(strings.TrimRight(source, "/"))
	if root == "" {
		root = "/"
	} else {
		root += "/"
	}
	// Only names of krsync's own form (TempDirName: 12 hex digits, then each rsync run's
	// ".LABEL-RANDOM"): a source entry merely starting with the prefix is compared.
	own := root + TempDirPrefix + strings.Repeat("[0-9a-f]", 12)
	names := []string{own, own + ".*"}
	if stateDir == "" || dest == "" {
		return names
	}
	if rel, ok := below(stateDir, dest); ok && rel != "." {
		names = append(names, root+globQuote(filepath.ToSlash(rel)))
	}
	return names
}

// globQuote quotes fnmatch's special characters with a backslash.
func globQuote(s string) string {
	var b strings.Builder
	for i := range len(s) { // bytes: a name need not be UTF-8
		if strings.IndexByte(`\*?[`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// holds says whether partition id is a verify lease.
func (v *verifyPass) holds(id int64) bool {
	if v == nil {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.ranges[id]
	return ok
}

// status is the comparison's progress, nil without --verify.
func (v *verifyPass) status() *leaseapi.VerifyProgress {
	if v == nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.progress
	p.ByKind = maps.Clone(p.ByKind)
	return &p
}

// issueVerify adds the verify leases over every directory the walk kept, once the
// directory pass has settled; or none, when the copy is incomplete (the comparison would
// only list what was not copied, and the run fails anyway).
func (c *Coordinator) issueVerify() error {
	l, v := c.leases, c.leases.verify
	if n := l.q.snapshot(); n.failed > 0 || n.walkErrors > 0 {
		v.mu.Lock()
		v.progress.State = leaseapi.VerifySkipped
		v.mu.Unlock()
		c.log.Warn().Int64("failed_partitions", n.failed).Int64("walk_errors", n.walkErrors).Msg("verify: skipped, the copy is incomplete")
		l.q.setVerifyIssued()
		return nil
	}
	var ranges []dirRange
	var dirs int64
	var after []byte
	for {
		_, count, last, err := l.journal.dirChunk(after, v.cfg.DirsPerPartition)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if count == 0 {
			break
		}
		ranges = append(ranges, dirRange{after: after, n: int(count)})
		dirs += count
		after = last
	}
	first, err := l.journal.reserveIDs(len(ranges))
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	parts := make([]restoredPartition, len(ranges))
	v.mu.Lock()
	for i, r := range ranges {
		id := first + int64(i)
		v.ranges[id] = r
		parts[i] = restoredPartition{id: id, kind: leaseapi.KindVerify, entries: int64(r.n)}
	}
	v.progress.State = leaseapi.VerifyRunning
	v.progress.Dirs = dirs
	v.mu.Unlock()
	l.q.add(parts...)
	l.q.setVerifyIssued()
	c.log.Info().Int("partitions", len(parts)).Int64("dirs", dirs).Bool("checksum", v.cfg.Checksum).Msg("verify: comparison issued")
	return nil
}

// list is the NUL-terminated list of directories of verify lease id.
func (v *verifyPass) list(j *journal, id int64) ([]byte, error) {
	v.mu.Lock()
	r, ok := v.ranges[id]
	v.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("partition %d: not a verify lease", id)
	}
	list, _, _, err := j.dirChunk(r.after, r.n)
	return list, err
}

// errNoVerifyReport is a verify lease completed without its report: by a worker that does
// not know verify leases (an older krsync), which ran the lease as something else.
var errNoVerifyReport = fmt.Errorf("a verify lease completed without a verify report: the worker runs a krsync that does not know verify leases; run workers of the coordinator's version")

// completeVerify marks verify lease id done and adds its report; see ledger.complete.
func (l *ledger) completeVerify(id int64, token string, stats leaseapi.TransferStats) error {
	v := l.verify
	if stats.Verify == nil {
		if err := l.fail(id, leaseapi.FailRequest{Token: token, Error: errNoVerifyReport.Error()}); err != nil {
			return err
		}
		return errNoVerifyReport
	}
	rep := stats.Verify
	v.mu.Lock()
	defer v.mu.Unlock()
	changed, err := l.q.complete(id, token, leaseapi.TransferStats{})
	if err != nil || !changed {
		return err
	}
	l.metrics.leaseSettled(id, token, "done")
	p := &v.progress
	p.DirsDone = addSaturating(p.DirsDone, int64(v.ranges[id].n))
	p.Entries = addSaturating(p.Entries, max(rep.Entries, 0))
	p.ContentBytes = addSaturating(p.ContentBytes, max(rep.ContentBytes, 0))
	p.Differences = addSaturating(p.Differences, max(rep.Differences, 0))
	for kind, n := range rep.ByKind {
		if p.ByKind == nil {
			p.ByKind = map[string]int64{}
		}
		p.ByKind[kind] = addSaturating(p.ByKind[kind], max(n, 0))
	}
	for _, d := range rep.Listed {
		if v.cfg.Report != nil {
			v.cfg.Report(verify.Difference{Path: string(d.Path), Kind: verify.Kind(d.Kind), Source: string(d.Source), Dest: string(d.Dest)})
		}
	}
	for _, n := range rep.Links {
		name := verify.LinkName{Path: string(n.Path), Compared: n.Compared}
		if n.Source != nil {
			name.Source, name.InSource = verify.Inode{Dev: n.Source.Dev, Ino: n.Source.Ino}, true
		}
		if n.Dest != nil {
			name.Dest, name.InDest = verify.Inode{Dev: n.Dest.Dev, Ino: n.Dest.Ino}, true
		}
		v.links = append(v.links, name)
	}
	l.log.Debug().Int64("partition", id).Int64("dirs", rep.Dirs).Int64("differences", rep.Differences).Msg("verify lease done")
	if n := l.q.snapshot(); n.finished {
		// The last lease: judge now, while the API still serves /metrics and the status.
		v.judgeLocked(n.failed == 0)
	}
	return nil
}

// judge ends the comparison once every verify lease has settled: it compares the grouping
// of hard links across the whole tree, from every lease's names, and reports and counts
// its differences. complete is false when some verify leases failed: their names are
// missing, so the grouping is not judged (the run fails on those partitions anyway). The
// completion of the last verify lease judges (completeVerify); Run calls it again after
// the end, for a run whose last verify lease failed.
func (v *verifyPass) judge(complete bool) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.judgeLocked(complete)
}

// judgeLocked is judge with v.mu held; it judges once.
func (v *verifyPass) judgeLocked(complete bool) {
	if v.progress.State != leaseapi.VerifyRunning {
		return
	}
	v.progress.State = leaseapi.VerifyDone
	if !complete {
		v.links = nil
		return
	}
	for _, d := range verify.HardLinkDifferences(v.links) {
		v.progress.Differences++
		if v.progress.ByKind == nil {
			v.progress.ByKind = map[string]int64{}
		}
		v.progress.ByKind[string(d.Kind)]++
		if v.cfg.Report != nil {
			v.cfg.Report(d)
		}
	}
	v.links = nil
}

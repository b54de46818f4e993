package fpart

import (
	"container/heap"
	"sort"
)

// Entry is one path of a partition.
type Entry struct {
	Path string // relative to the root, '/'-separated, any bytes; "." is the root itself
	Size int64  // st_size for regular files, 0 for others; for -E/-D directories, their own files' sizes
	Dir  bool   // a directory packed as an entry (-z, -zz, -zzz, -D, -E)
	Root int    // which root Path is relative to (WalkRoots); 0 for Walk
}

// Partition is a closed partition: entries in walk order, hard links of one inode together.
type Partition struct {
	Index   int // 0-based, in the order partitions are handed out
	Entries []Entry
	Bytes   int64 // the sum of the entries' sizes
	// Oversized marks fpart's special partition 0 of non-live -s: entries bigger than -s.
	Oversized bool
}

// Paths returns the entries' paths.
func (p Partition) Paths() []string {
	paths := make([]string, len(p.Entries))
	for i, e := range p.Entries {
		paths[i] = e.Path
	}
	return paths
}

// List returns the paths, each ending with NUL: the form rsync's --files-from --from0 reads.
func (p Partition) List() []byte {
	n := 0
	for _, e := range p.Entries {
		n += len(e.Path) + 1
	}
	list := make([]byte, 0, n)
	for _, e := range p.Entries {
		list = append(list, e.Path...)
		list = append(list, 0)
	}
	return list
}

// packer turns units (one entry, or every path of one hard-linked inode) into partitions.
type packer interface {
	add(unit []Entry, bytes int64) error
	// skip counts entries the walk left out (Handler.Compare): walked, in no partition.
	skip(n int64) error
	finish() error
}

func newPacker(o Options, emit func(Partition) error) packer {
	switch {
	case o.Parts > 0:
		return &balancePacker{parts: o.Parts, emit: emit}
	case o.Live:
		return &livePacker{maxFiles: o.MaxFiles, maxBytes: o.MaxBytes, spread: o.Spread, emit: emit}
	default:
		return &firstFitPacker{maxFiles: o.MaxFiles, maxBytes: o.MaxBytes, emit: emit}
	}
}

// livePacker is fpart's live mode (-L): entries fill the current partition, which is
// closed and handed out as soon as it holds -f entries or -s bytes (so it may exceed -s
// by its last entry, as fpart's does). A hard-link group that would push it over -f
// closes it first, so the group stays together. With Options.Spread, the limit on entries
// grows with what was packed before (see Spread).
type livePacker struct {
	maxFiles, maxBytes int64
	spread             int64
	walked             int64 // entries in the partitions closed so far, and those skipped
	emit               func(Partition) error
	index              int
	cur                []Entry
	bytes              int64
	// limit is cur's limit on entries, fixed when its first entry came (0: none); spanned
	// counts the entries skipped while cur is open (see skip).
	limit, spanned int64
}

// maxEntries is the limit on entries of a partition opened now; 0 means none.
func (l *livePacker) maxEntries() int64 {
	if l.spread <= 0 || l.maxFiles <= 0 {
		return l.maxFiles
	}
	return min(l.maxFiles, max(MinSpreadFiles, l.walked/l.spread))
}

// spanPerLimit bounds how many entries an open partition may span in the walk, as a
// multiple of its limit on entries (fixed when it opened): when the walk leaves most entries
// out (a re-sync into a destination that holds them unchanged), the few left are still
// handed out as the walk goes; the partitions grow with the walk as a first copy's do, to
// about 160 entries of 16,000 walked when 1 in 100 changed and -f is 2,000.
const spanPerLimit = 8

// skip counts n entries left out: they make the later partitions grow as packed ones do,
// and close the open partition once it spans spanPerLimit times its limit.
func (l *livePacker) skip(n int64) error {
	l.walked += n
	if len(l.cur) == 0 {
		return nil
	}
	l.spanned += n
	if l.limit > 0 && l.spanned+int64(len(l.cur)) >= spanPerLimit*l.limit {
		return l.close()
	}
	return nil
}

func (l *livePacker) add(unit []Entry, bytes int64) error {
	if len(l.cur) > 0 && l.limit > 0 && int64(len(l.cur)+len(unit)) > l.limit {
		if err := l.close(); err != nil {
			return err
		}
	}
	if len(l.cur) == 0 {
		l.limit = l.maxEntries()
		if l.limit > 0 {
			l.cur = make([]Entry, 0, min(l.limit, 4096))
		}
	}
	l.cur = append(l.cur, unit...)
	l.bytes += bytes
	if (l.limit > 0 && int64(len(l.cur)) >= l.limit) || (l.maxBytes > 0 && l.bytes >= l.maxBytes) {
		return l.close()
	}
	return nil
}

func (l *livePacker) close() error {
	p := Partition{Index: l.index, Entries: l.cur, Bytes: l.bytes}
	l.index++
	l.walked += int64(len(l.cur))
	l.cur, l.bytes, l.spanned = nil, 0, 0
	return l.emit(p)
}

func (l *livePacker) finish() error {
	if len(l.cur) == 0 {
		return nil
	}
	return l.close()
}

// unitRef locates one unit in a collecting packer's entries.
type unitRef struct {
	start, n int
	bytes    int64
	part     int // assigned partition; -1 is the oversized partition
}

// collected holds every unit of a non-live walk, in walk order.
type collected struct {
	entries []Entry
	units   []unitRef
}

func (c *collected) store(unit []Entry, bytes int64) *unitRef {
	c.units = append(c.units, unitRef{start: len(c.entries), n: len(unit), bytes: bytes})
	c.entries = append(c.entries, unit...)
	return &c.units[len(c.units)-1]
}

// build groups the entries by assigned partition, keeping walk order inside each.
func (c *collected) build(numParts int, oversized bool) ([]Partition, *Partition) {
	parts := make([]Partition, numParts)
	counts := make([]int, numParts)
	extra := Partition{Oversized: true}
	for _, u := range c.units {
		if u.part >= 0 {
			counts[u.part] += u.n
		}
	}
	for i := range parts {
		parts[i].Entries = make([]Entry, 0, counts[i])
	}
	for _, u := range c.units {
		target := &extra
		if u.part >= 0 {
			target = &parts[u.part]
		}
		target.Entries = append(target.Entries, c.entries[u.start:u.start+u.n]...)
		target.Bytes += u.bytes
	}
	c.entries, c.units = nil, nil
	if !oversized || len(extra.Entries) == 0 {
		return parts, nil
	}
	return parts, &extra
}

// emitAll hands out the oversized partition (if any) first, then the others, as fpart
// numbers them (0, then 1..N).
func emitAll(parts []Partition, extra *Partition, emit func(Partition) error) error {
	index := 0
	if extra != nil {
		extra.Index = index
		index++
		if err := emit(*extra); err != nil {
			return err
		}
	}
	for i := range parts {
		parts[i].Index = index
		index++
		if err := emit(parts[i]); err != nil {
			return err
		}
		parts[i] = Partition{}
	}
	return nil
}

// firstFitPacker is fpart's non-live -f/-s (dispatch_file_entries_by_limits): each unit
// goes into the first partition it fits in, a new one when none; with -s, units bigger
// than -s go to the special partition 0. Partitions are handed out after the walk.
type firstFitPacker struct {
	maxFiles, maxBytes int64
	emit               func(Partition) error
	all                collected
	files              []int64
	bytes              []int64
	firstOpen          int // partitions before it are full
}

func (f *firstFitPacker) add(unit []Entry, bytes int64) error {
	u := f.all.store(unit, bytes)
	if f.maxBytes > 0 && bytes > f.maxBytes {
		u.part = -1
		return nil
	}
	n := int64(len(unit))
	for j := f.firstOpen; j < len(f.files); j++ {
		if (f.maxFiles <= 0 || f.files[j]+n <= f.maxFiles) && (f.maxBytes <= 0 || f.bytes[j]+bytes <= f.maxBytes) {
			u.part = j
			f.files[j] += n
			f.bytes[j] += bytes
			f.advance()
			return nil
		}
	}
	u.part = len(f.files)
	f.files = append(f.files, n)
	f.bytes = append(f.bytes, bytes)
	f.advance()
	return nil
}

// advance skips partitions that can take nothing more.
func (f *firstFitPacker) advance() {
	for f.firstOpen < len(f.files) &&
		((f.maxFiles > 0 && f.files[f.firstOpen] >= f.maxFiles) || (f.maxBytes > 0 && f.bytes[f.firstOpen] >= f.maxBytes)) {
		f.firstOpen++
	}
}

// skip: a collecting packer's partitions do not depend on the walk's progress.
func (f *firstFitPacker) skip(int64) error { return nil }

func (f *firstFitPacker) finish() error {
	parts, extra := f.all.build(len(f.files), f.maxBytes > 0)
	return emitAll(parts, extra, f.emit)
}

// balancePacker is fpart's -n: after the walk, units go largest first into the partition
// holding the fewest bytes (the first such on ties), then zero-byte units move to the first
// partitions holding fewer than the mean number of entries (fpart's
// dispatch_empty_file_entries), so empty files spread instead of piling up.
type balancePacker struct {
	parts int
	emit  func(Partition) error
	all   collected
}

func (b *balancePacker) add(unit []Entry, bytes int64) error {
	b.all.store(unit, bytes)
	return nil
}

func (b *balancePacker) skip(int64) error { return nil }

func (b *balancePacker) finish() error {
	units := b.all.units
	order := make([]int, len(units))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return units[order[i]].bytes > units[order[j]].bytes })
	h := make(partHeap, b.parts)
	for i := range h {
		h[i] = partLoad{index: i}
	}
	files := make([]int, b.parts)
	for _, k := range order {
		u := &units[k]
		u.part = h[0].index
		h[0].bytes += u.bytes
		files[u.part] += u.n
		heap.Fix(&h, 0)
	}
	mean := len(b.all.entries) / b.parts
	for k := range units {
		u := &units[k]
		if u.bytes != 0 {
			continue
		}
		for j := range files {
			if j != u.part && files[j] < mean {
				files[u.part] -= u.n
				files[j] += u.n
				u.part = j
				break
			}
		}
	}
	parts, _ := b.all.build(b.parts, false)
	return emitAll(parts, nil, b.emit)
}

// partLoad is a partition's byte load in the -n heap.
type partLoad struct {
	index int
	bytes int64
}

// partHeap is a min-heap by bytes, then index (fpart's find_smallest_partition_index).
type partHeap []partLoad

func (h partHeap) Len() int { return len(h) }
func (h partHeap) Less(i, j int) bool {
	if h[i].bytes != h[j].bytes {
		return h[i].bytes < h[j].bytes
	}
	return h[i].index < h[j].index
}
func (h partHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *partHeap) Push(x any)   { *h = append(*h, x.(partLoad)) }
func (h *partHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

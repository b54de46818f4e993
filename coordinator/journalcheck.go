package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkJournalPages walks the B+tree of a bbolt file from its newest valid meta page, with
// bounds, a visited set and a depth limit, before bbolt opens it. Why: bbolt trusts its
// pages; a single damaged byte can make a branch point back at its own ancestor, and bbolt's
// cursor then descends forever until the process runs out of memory (a fatal error no
// recover() can catch; FuzzJournalFile found it). Everything reachable from the root bucket
// must be a page that names itself, of the right type, inside the file and the high-water
// mark, with its elements inside the page, and no page may be reached twice. A file that
// passes may still hold bad records: load() checks those.
//
// The layout is bbolt's on-disk format (go.etcd.io/bbolt, internal/common: page.go, meta.go,
// bucket.go): a 16-byte page header (id, flags, count, overflow), 16-byte branch elements
// (pos, ksize, pgid) and leaf elements (flags, pos, ksize, vsize), a bucket value starting
// with its root page id (0: an inline page follows).
func checkJournalPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	c := &pageChecker{f: f, size: fi.Size(), seen: map[uint64]bool{}}
	root, err := c.meta()
	if err != nil {
		return corruptf("%v", err)
	}
	if err := c.tree(root, 0); err != nil {
		return corruptf("%v", err)
	}
	return nil
}

const (
	pageHeaderSize    = 16
	pageElementSize   = 16
	branchPageFlag    = 0x01
	leafPageFlag      = 0x02
	bucketLeafFlag    = 0x01
	metaMagic         = 0xED0CDAED
	maxTreeDepth      = 64
	minJournalPage    = 512
	maxJournalPage    = 1 << 16
	metaChecksumBytes = 56 // magic..txid, what the checksum covers
)

type pageChecker struct {
	f        *os.File
	size     int64
	pageSize uint64
	highMark uint64 // meta's pgid: pages at or above it are not in use
	seen     map[uint64]bool
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrJournalCorrupt, fmt.Sprintf(format, args...))
}

// meta reads both meta pages and returns the root bucket's page id of the newest valid one.
func (c *pageChecker) meta() (uint64, error) {
	buf := make([]byte, pageHeaderSize+metaChecksumBytes+8)
	first, ok0 := c.readMeta(0, buf)
	offsets := []uint64{4096, 8192, 16384, 65536} // where the second may be without the first
	if ok0 {
		offsets = []uint64{first.pageSize}
	}
	best, ok := first, ok0
	for _, off := range offsets {
		second, ok1 := c.readMeta(int64(off), buf)
		if !ok1 || second.pageSize != off {
			continue
		}
		if !ok || second.txid > best.txid {
			best, ok = second, true
		}
		break
	}
	if !ok {
		return 0, errors.New("no valid meta page")
	}
	c.pageSize, c.highMark = best.pageSize, best.high
	if c.highMark*c.pageSize > uint64(c.size) {
		return 0, fmt.Errorf("meta says %d pages of %d bytes, the file holds %d bytes", c.highMark, c.pageSize, c.size)
	}
	return best.root, nil
}

type metaPage struct {
	pageSize, root, high, txid uint64
}

// readMeta reads and checks the meta page at off.
func (c *pageChecker) readMeta(off int64, buf []byte) (metaPage, bool) {
	if _, err := c.f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return metaPage{}, false
	}
	body := buf[pageHeaderSize:]
	le := binary.LittleEndian
	if le.Uint32(body[0:]) != metaMagic {
		return metaPage{}, false
	}
	sum := fnv.New64a()
	_, _ = sum.Write(body[:metaChecksumBytes])
	if sum.Sum64() != le.Uint64(body[metaChecksumBytes:]) {
		return metaPage{}, false
	}
	m := metaPage{pageSize: uint64(le.Uint32(body[8:])), root: le.Uint64(body[16:]), high: le.Uint64(body[40:]), txid: le.Uint64(body[48:])}
	if m.pageSize < minJournalPage || m.pageSize > maxJournalPage || m.pageSize&(m.pageSize-1) != 0 {
		return metaPage{}, false
	}
	return m, true
}

// tree checks the page pgid and, below it, every branch and bucket it leads to.
func (c *pageChecker) tree(pgid uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: the tree is deeper than %d", pgid, maxTreeDepth)
	}
	if pgid < 2 || pgid >= c.highMark {
		return fmt.Errorf("page %d: outside the file's %d pages", pgid, c.highMark)
	}
	if c.seen[pgid] {
		return fmt.Errorf("page %d: reached twice", pgid)
	}
	c.seen[pgid] = true
	head := make([]byte, pageHeaderSize)
	if _, err := c.f.ReadAt(head, int64(pgid*c.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", pgid, err)
	}
	le := binary.LittleEndian
	overflow := uint64(le.Uint32(head[12:]))
	if le.Uint64(head[0:]) != pgid || pgid+overflow >= c.highMark || pgid+overflow < pgid {
		return fmt.Errorf("page %d: names itself %d, %d overflow pages", pgid, le.Uint64(head[0:]), overflow)
	}
	page := make([]byte, (overflow+1)*c.pageSize)
	if _, err := c.f.ReadAt(page, int64(pgid*c.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", pgid, err)
	}
	return c.elements(page, pgid, depth)
}

// elements checks the elements of one page (a file page, or an inline bucket's page).
func (c *pageChecker) elements(page []byte, pgid uint64, depth int) error {
	le := binary.LittleEndian
	flags, count := le.Uint16(page[8:]), int(le.Uint16(page[10:]))
	if pageHeaderSize+count*pageElementSize > len(page) {
		return fmt.Errorf("page %d: %d elements do not fit", pgid, count)
	}
	for i := range count {
		e := page[pageHeaderSize+i*pageElementSize:]
		at := pageHeaderSize + i*pageElementSize
		switch flags {
		case branchPageFlag:
			pos, ksize, child := int(le.Uint32(e[0:])), int(le.Uint32(e[4:])), le.Uint64(e[8:])
			if at+pos+ksize > len(page) || pos < 0 || ksize < 0 {
				return fmt.Errorf("page %d: element %d outside the page", pgid, i)
			}
			if err := c.tree(child, depth+1); err != nil {
				return err
			}
		case leafPageFlag:
			eflags, pos, ksize, vsize := le.Uint32(e[0:]), int(le.Uint32(e[4:])), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
			end := at + pos + ksize + vsize
			if end > len(page) || pos < 0 || ksize < 0 || vsize < 0 {
				return fmt.Errorf("page %d: element %d outside the page", pgid, i)
			}
			if eflags&bucketLeafFlag == 0 {
				continue
			}
			value := page[at+pos+ksize : end]
			if len(value) < 16 {
				return fmt.Errorf("page %d: bucket %d too short", pgid, i)
			}
			if root := le.Uint64(value[0:]); root != 0 {
				if err := c.tree(root, depth+1); err != nil {
					return err
				}
				continue
			}
			inline := value[16:]
			if len(inline) < pageHeaderSize {
				return fmt.Errorf("page %d: inline bucket %d too short", pgid, i)
			}
			if depth+1 > maxTreeDepth {
				return fmt.Errorf("page %d: the tree is deeper than %d", pgid, maxTreeDepth)
			}
			if err := c.elements(inline, pgid, depth+1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("page %d: flags %#x, not a branch or leaf page", pgid, flags)
		}
	}
	return nil
}

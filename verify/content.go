package verify

import (
	"bytes"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// contentChunk is how much of each file one read compares.
const contentChunk = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 2*contentChunk); return &b }}

// compareContents compares the bytes of a regular file of equal size on both sides. It
// compares the bytes themselves, not hashes of them: reading both files is the cost either
// way, and the first differing offset says more than two digests.
func (w *walker) compareContents(j job) {
	var fds [2]int
	for s := sideSource; s <= sideDest; s++ {
		// O_NONBLOCK: should the file have become a FIFO since fstatat, open must not wait.
		fd, err := openBeneath(w.roots[s], j.rel, unix.O_RDONLY|unix.O_NONBLOCK)
		if err == nil {
			var st unix.Stat_t
			if err = unix.Fstat(fd, &st); err == nil && (st.Mode&unix.S_IFMT != unix.S_IFREG || (inode{uint64(st.Dev), st.Ino}) != j.inodes[s]) {
				err = fmt.Errorf("replaced during the comparison")
			}
			if err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			if s == sideDest {
				unix.Close(fds[sideSource])
			}
			w.reportError(j.rel, s, fmt.Errorf("open for contents: %w", err))
			return
		}
		fds[s] = fd
	}
	defer unix.Close(fds[sideSource])
	defer unix.Close(fds[sideDest])
	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	bufA, bufB := (*bufp)[:contentChunk], (*bufp)[contentChunk:]
	var off int64
	for {
		na, errA := readFull(fds[sideSource], bufA)
		nb, errB := readFull(fds[sideDest], bufB)
		switch {
		case errA != nil:
			w.reportError(j.rel, sideSource, fmt.Errorf("read: %w", errA))
			return
		case errB != nil:
			w.reportError(j.rel, sideDest, fmt.Errorf("read: %w", errB))
			return
		}
		n := min(na, nb)
		if !bytes.Equal(bufA[:n], bufB[:n]) {
			i := 0
			for bufA[i] == bufB[i] {
				i++
			}
			at := off + int64(i)
			w.report(Difference{Path: j.rel, Kind: Content,
				Source: fmt.Sprintf("byte %d is %#02x", at, bufA[i]), Dest: fmt.Sprintf("byte %d is %#02x", at, bufB[i])})
			w.count(0, 0, at)
			return
		}
		off += int64(n)
		if na != nb { // the file changed size since fstatat
			w.report(Difference{Path: j.rel, Kind: Content,
				Source: fmt.Sprintf("%d bytes read", off+int64(na-n)), Dest: fmt.Sprintf("%d bytes read", off+int64(nb-n))})
			w.count(0, 0, off)
			return
		}
		if na < len(bufA) {
			w.count(0, 0, off)
			return
		}
	}
}

// readFull reads until buf is full or the end of the file.
func readFull(fd int, buf []byte) (int, error) {
	got := 0
	for got < len(buf) {
		n, err := unix.Read(fd, buf[got:])
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return got, err
		}
		if n == 0 {
			break
		}
		got += n
	}
	return got, nil
}

package slowfs

import (
	"fmt"
	"os"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Config sets the costs of a mount. The zero value is a pass-through without delays and
// without kernel caching.
type Config struct {
	// Delay is the cost of each metadata request (Op.Delayed), e.g. 1 ms for a LAN NFS server.
	Delay time.Duration
	// DataDelayPerMiB is the cost of each MiB read or written, proportionally for smaller
	// requests; 0 leaves data at the speed of the backing disk.
	DataDelayPerMiB time.Duration
	// EntryTTL and AttrTTL are how long the kernel may cache names and attributes; 0 (the
	// default) sends every lookup and stat to slowfs.
	EntryTTL, AttrTTL time.Duration
	// Debug logs every FUSE request (go-fuse's debug output) to stderr.
	Debug bool
	// Vanish, when set, makes every name it returns true for vanish between a directory
	// listing and the lookup of the name: readdir still lists it, and a lookup (lstat, open)
	// answers ENOENT, as on a live volume where the entry was deleted in between. Tests use
	// it to make that race happen every time.
	Vanish func(name string) bool
}

// FS is a mounted slowfs.
type FS struct {
	// Backing is the mirrored directory, Mountpoint where it is mounted.
	Backing, Mountpoint string

	cfg    Config
	server *fuse.Server
	count  counters
}

// Mount mirrors backing at mountpoint (an existing directory) and serves it until Unmount.
// Running as root, the mount allows other users (allow_other) and lets the kernel check
// permissions from the mirrored modes (default_permissions), as a network file system does.
func Mount(backing, mountpoint string, cfg Config) (*FS, error) {
	root, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("slowfs: backing directory: %w", err)
	}
	negative := time.Duration(0)
	opts := &fs.Options{
		EntryTimeout:    &cfg.EntryTTL,
		AttrTimeout:     &cfg.AttrTTL,
		NegativeTimeout: &negative,
		// go-fuse otherwise shows mode 0000 as 0755 or 0644; root needs no permission bits.
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			// allow_other needs no /etc/fuse.conf entry for root; for others it would fail.
			AllowOther: os.Geteuid() == 0,
			Options:    []string{"default_permissions"},
			FsName:     backing,
			Name:       "slowfs",
			// Without READDIRPLUS a listing is one request per batch of names, and the
			// attributes come from the lookups the caller makes, each a round trip.
			DisableReadDirPlus: true,
			Debug:              cfg.Debug,
		},
	}
	f := &FS{Backing: backing, Mountpoint: mountpoint, cfg: cfg}
	raw := &slowRaw{RawFileSystem: fs.NewNodeFS(root, opts), fs: f}
	server, err := fuse.NewServer(raw, mountpoint, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("slowfs: mount %s on %s: %w", backing, mountpoint, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return nil, fmt.Errorf("slowfs: mount %s on %s: %w", backing, mountpoint, err)
	}
	f.server = server
	return f, nil
}

// Counts returns the requests served so far.
func (f *FS) Counts() Counts { return f.count.snapshot() }

// Unmount unmounts and waits until every request has been answered; it fails (and the
// mount stays) while a process still uses the mount.
func (f *FS) Unmount() error {
	if err := f.server.Unmount(); err != nil {
		return fmt.Errorf("slowfs: unmount %s: %w", f.Mountpoint, err)
	}
	f.server.Wait()
	return nil
}

// op counts one request and sleeps its delay.
func (f *FS) op(o Op) {
	f.count.ops[o].Add(1)
	if o.Delayed() {
		f.sleep(f.cfg.Delay)
	}
}

// data counts one read or write of n bytes and sleeps its share of DataDelayPerMiB.
func (f *FS) data(o Op, n int) {
	f.count.ops[o].Add(1)
	if o == OpRead {
		f.count.bytesRead.Add(uint64(n))
	} else {
		f.count.bytesWritten.Add(uint64(n))
	}
	f.sleep(time.Duration(int64(f.cfg.DataDelayPerMiB) * int64(n) >> 20))
}

func (f *FS) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	start := time.Now()
	time.Sleep(d)
	f.count.sleptNanos.Add(uint64(time.Since(start)))
}

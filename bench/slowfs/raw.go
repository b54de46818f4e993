package slowfs

import "github.com/hanwen/go-fuse/v2/fuse"

// slowRaw wraps go-fuse's node file system at the level of FUSE requests, so that each
// request the kernel sends is counted once and delayed once, whatever the node layer
// does with it. Requests not overridden here pass through uncounted (locks, ioctl, ...).
//
// Open and Create clear FOPEN_PASSTHROUGH, which go-fuse sets for loopback files when it
// runs as root: with it the kernel reads and writes the backing file itself, and reads
// and writes would be neither counted nor delayed.
type slowRaw struct {
	fuse.RawFileSystem
	fs *FS
}

func (r *slowRaw) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	r.fs.op(OpLookup)
	if r.fs.cfg.Vanish != nil && r.fs.cfg.Vanish(name) {
		return fuse.ENOENT
	}
	return r.RawFileSystem.Lookup(c, h, name, out)
}

func (r *slowRaw) Forget(nodeid, nlookup uint64) {
	r.fs.op(OpForget)
	r.RawFileSystem.Forget(nodeid, nlookup)
}

func (r *slowRaw) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	r.fs.op(OpGetattr)
	return r.RawFileSystem.GetAttr(c, in, out)
}

func (r *slowRaw) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	r.fs.op(OpSetattr)
	return r.RawFileSystem.SetAttr(c, in, out)
}

func (r *slowRaw) Statx(c <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	r.fs.op(OpStatx)
	return r.RawFileSystem.Statx(c, in, out)
}

func (r *slowRaw) Access(c <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	r.fs.op(OpAccess)
	return r.RawFileSystem.Access(c, in)
}

func (r *slowRaw) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	r.fs.op(OpMknod)
	return r.RawFileSystem.Mknod(c, in, name, out)
}

func (r *slowRaw) Mkdir(c <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	r.fs.op(OpMkdir)
	return r.RawFileSystem.Mkdir(c, in, name, out)
}

func (r *slowRaw) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	r.fs.op(OpUnlink)
	return r.RawFileSystem.Unlink(c, h, name)
}

func (r *slowRaw) Rmdir(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	r.fs.op(OpRmdir)
	return r.RawFileSystem.Rmdir(c, h, name)
}

func (r *slowRaw) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	r.fs.op(OpRename)
	return r.RawFileSystem.Rename(c, in, oldName, newName)
}

func (r *slowRaw) Link(c <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	r.fs.op(OpLink)
	return r.RawFileSystem.Link(c, in, name, out)
}

func (r *slowRaw) Symlink(c <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	r.fs.op(OpSymlink)
	return r.RawFileSystem.Symlink(c, h, target, name, out)
}

func (r *slowRaw) Readlink(c <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	r.fs.op(OpReadlink)
	return r.RawFileSystem.Readlink(c, h)
}

func (r *slowRaw) GetXAttr(c <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	r.fs.op(OpXattr)
	return r.RawFileSystem.GetXAttr(c, h, attr, dest)
}

func (r *slowRaw) ListXAttr(c <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	r.fs.op(OpXattr)
	return r.RawFileSystem.ListXAttr(c, h, dest)
}

func (r *slowRaw) SetXAttr(c <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	r.fs.op(OpXattr)
	return r.RawFileSystem.SetXAttr(c, in, attr, data)
}

func (r *slowRaw) RemoveXAttr(c <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	r.fs.op(OpXattr)
	return r.RawFileSystem.RemoveXAttr(c, h, attr)
}

func (r *slowRaw) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	r.fs.op(OpCreate)
	st := r.RawFileSystem.Create(c, in, name, out)
	out.OpenFlags &^= fuse.FOPEN_PASSTHROUGH
	return st
}

func (r *slowRaw) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	r.fs.op(OpOpen)
	st := r.RawFileSystem.Open(c, in, out)
	out.OpenFlags &^= fuse.FOPEN_PASSTHROUGH
	return st
}

func (r *slowRaw) Read(c <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	res, st := r.RawFileSystem.Read(c, in, buf)
	n := 0
	if res != nil {
		n = res.Size()
	}
	r.fs.data(OpRead, n)
	return res, st
}

func (r *slowRaw) Write(c <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	r.fs.data(OpWrite, len(data))
	return r.RawFileSystem.Write(c, in, data)
}

func (r *slowRaw) Writev(c <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	n := 0
	for _, d := range data {
		n += len(d)
	}
	r.fs.data(OpWrite, n)
	return r.RawFileSystem.Writev(c, in, data)
}

func (r *slowRaw) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	r.fs.op(OpRelease)
	r.RawFileSystem.Release(c, in)
}

func (r *slowRaw) Flush(c <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	r.fs.op(OpFlush)
	return r.RawFileSystem.Flush(c, in)
}

func (r *slowRaw) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	r.fs.op(OpFsync)
	return r.RawFileSystem.Fsync(c, in)
}

func (r *slowRaw) OpenDir(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	r.fs.op(OpOpendir)
	return r.RawFileSystem.OpenDir(c, in, out)
}

func (r *slowRaw) ReadDir(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	r.fs.op(OpReaddir)
	return r.RawFileSystem.ReadDir(c, in, out)
}

func (r *slowRaw) ReadDirPlus(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	r.fs.op(OpReaddir)
	return r.RawFileSystem.ReadDirPlus(c, in, out)
}

func (r *slowRaw) ReleaseDir(in *fuse.ReleaseIn) {
	r.fs.op(OpReleasedir)
	r.RawFileSystem.ReleaseDir(in)
}

func (r *slowRaw) FsyncDir(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	r.fs.op(OpFsync)
	return r.RawFileSystem.FsyncDir(c, in)
}

func (r *slowRaw) StatFs(c <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	r.fs.op(OpStatfs)
	return r.RawFileSystem.StatFs(c, h, out)
}

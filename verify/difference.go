package verify

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Kind names a kind of difference.
type Kind string

// The kinds of difference Run reports. Missing and Extra are reported once for a directory,
// not for each entry below it; a Type difference ends the comparison of that path.
const (
	Missing  Kind = "missing"  // in the source, not in the destination
	Extra    Kind = "extra"    // in the destination, not in the source
	Type     Kind = "type"     // file, directory, symlink, fifo, socket, char or block device
	Mode     Kind = "mode"     // permission bits, setuid, setgid, sticky (not for symlinks)
	UID      Kind = "uid"      // numeric owner
	GID      Kind = "gid"      // numeric group
	Mtime    Kind = "mtime"    // every type, symlinks and the root included, to the nanosecond
	Size     Kind = "size"     // regular files
	Content  Kind = "content"  // regular files of equal size, with Config.Checksum
	Target   Kind = "target"   // symlink target
	Rdev     Kind = "rdev"     // device number of a char or block device
	HardLink Kind = "hardlink" // the names sharing this entry's inode differ
	// Error is an entry or directory that could not be read on one side (Source or Dest
	// holds the error): nothing below it was compared, so the trees are not proven equal.
	Error Kind = "error"
)

// Difference is one difference between the source and the destination. Path is relative
// to the roots ("." is the root), '/'-separated, of any bytes; Source and Dest are the two
// values in readable form ("absent" for a missing side).
type Difference struct {
	Path   string
	Kind   Kind
	Source string
	Dest   string
}

// String renders the difference on one line, names quoted Go-style when they hold bytes a
// terminal would not show as they are.
func (d Difference) String() string {
	return fmt.Sprintf("%s %s: %s != %s", d.Kind, Printable(d.Path), Printable(d.Source), Printable(d.Dest))
}

// Printable returns s itself when it is valid UTF-8 without control characters, and
// strconv.Quote(s) otherwise (reversible with strconv.Unquote).
func Printable(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return strconv.Quote(s)
		}
	}
	return s
}

// reportRecord is the JSON form of a Difference, one per line in a report: each of path,
// source and dest is a JSON string when its bytes are valid UTF-8 (JSON escapes newlines and
// control characters), and otherwise appears as path_b64, source_b64 or dest_b64 instead,
// the standard base64 of the raw bytes. JSON cannot hold invalid UTF-8: encoding/json would
// replace it with U+FFFD and lose the name.
type reportRecord struct {
	Path      *string `json:"path,omitempty"`
	PathB64   *string `json:"path_b64,omitempty"`
	Kind      Kind    `json:"kind"`
	Source    *string `json:"source,omitempty"`
	SourceB64 *string `json:"source_b64,omitempty"`
	Dest      *string `json:"dest,omitempty"`
	DestB64   *string `json:"dest_b64,omitempty"`
}

func encodeField(s string) (plain, b64 *string) {
	if utf8.ValidString(s) {
		return &s, nil
	}
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	return nil, &enc
}

func decodeField(name string, plain, b64 *string) (string, error) {
	switch {
	case plain != nil && b64 != nil:
		return "", fmt.Errorf("both %s and %s_b64", name, name)
	case b64 != nil:
		raw, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return "", fmt.Errorf("%s_b64: %w", name, err)
		}
		return string(raw), nil
	case plain != nil:
		return *plain, nil
	}
	return "", nil
}

// MarshalJSON encodes the difference as one report record (see README, "Verify").
func (d Difference) MarshalJSON() ([]byte, error) {
	var r reportRecord
	r.Kind = d.Kind
	r.Path, r.PathB64 = encodeField(d.Path)
	r.Source, r.SourceB64 = encodeField(d.Source)
	r.Dest, r.DestB64 = encodeField(d.Dest)
	return json.Marshal(r)
}

// UnmarshalJSON decodes a report record, the _b64 fields included, back to the exact bytes.
func (d *Difference) UnmarshalJSON(data []byte) error {
	var r reportRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	var err error
	out := Difference{Kind: r.Kind}
	if out.Path, err = decodeField("path", r.Path, r.PathB64); err != nil {
		return err
	}
	if out.Source, err = decodeField("source", r.Source, r.SourceB64); err != nil {
		return err
	}
	if out.Dest, err = decodeField("dest", r.Dest, r.DestB64); err != nil {
		return err
	}
	*d = out
	return nil
}

// typeName names the type bits of st_mode.
func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("type %#o", mode&unix.S_IFMT)
}

func formatMtime(sec, nsec int64) string {
	return time.Unix(sec, nsec).UTC().Format(time.RFC3339Nano)
}

func formatRdev(rdev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev))
}

func linkGroupName(first string) string {
	if first == "" {
		return "alone"
	}
	return "linked with " + strconv.Quote(first)
}

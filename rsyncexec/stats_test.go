package rsyncexec

import (
	"testing"
)

// rsync 3.2+ --stats output (thousands separators), with -v file names before it.
const stats32 = `a/b/file
Number of files: 1,234 (reg: 1,000, dir: 200, link: 30, dev: 3, special: 1)
Number of created files: 1,230 (reg: 999, dir: 200, link: 31)
Number of deleted files: 0
Number of regular files transferred: 1,000
Total file size: 123,456,789 bytes
Total transferred file size: 23,456,789 bytes
Literal data: 3,456,789 bytes
Matched data: 20,000,000 bytes
File list size: 65,536
File list generation time: 0.001 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 3,500,000
Total bytes received: 19,123

sent 3,500,000 bytes  received 19,123 bytes  7,038,246.00 bytes/sec
total size is 123,456,789  speedup is 35.08
`

// rsync 3.0 --stats output: no breakdown, no separators, older wording.
const stats30 = `
Number of files: 57
Number of files transferred: 12
Total file size: 9876 bytes
Total transferred file size: 543 bytes
Literal data: 543 bytes
Matched data: 0 bytes
File list size: 1024
File list generation time: 0.001 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 1800
Total bytes received: 250
`

// rsync -h (human-readable) output.
const statsHuman = `Number of files: 3 (reg: 2, dir: 1)
Number of regular files transferred: 2
Total file size: 2.86M bytes
Total transferred file size: 1,5K bytes
Total bytes sent: 2.86M
`

func TestParseStats(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want Stats
	}{
		{"rsync 3.2", stats32, Stats{
			Files: 1234, RegularFiles: 1000, Dirs: 200, Symlinks: 30, Devices: 3, Specials: 1,
			CreatedFiles: 1230, RegularFilesTransferred: 1000, TotalFileSize: 123456789,
			TotalTransferredSize: 23456789, LiteralData: 3456789, MatchedData: 20000000,
			FileListSize: 65536, BytesSent: 3500000, BytesReceived: 19123, Parsed: true,
		}},
		{"rsync 3.0", stats30, Stats{
			Files: 57, RegularFilesTransferred: 12, TotalFileSize: 9876, TotalTransferredSize: 543,
			LiteralData: 543, FileListSize: 1024, BytesSent: 1800, BytesReceived: 250, Parsed: true,
		}},
		{"human readable", statsHuman, Stats{
			Files: 3, RegularFiles: 2, Dirs: 1, RegularFilesTransferred: 2, TotalFileSize: 2860000,
			TotalTransferredSize: 1500, BytesSent: 2860000, Parsed: true,
		}},
		{"last report wins", "Number of files: 5\nNumber of files: 7\n", Stats{Files: 7, Parsed: true}},
		{"garbage", "Number of files: lots\nTotal file size: -5 bytes\nLiteral data: 1,,2 bytes\n", Stats{}},
		{"empty", "", Stats{}},
		{"CRLF", "Number of regular files transferred: 4\r\n", Stats{RegularFilesTransferred: 4, Parsed: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseStats([]byte(tt.out)); got != tt.want {
				t.Errorf("ParseStats:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestStatsAdd(t *testing.T) {
	a := Stats{Files: 1, RegularFilesTransferred: 2, TotalTransferredSize: 3, Parsed: true}
	b := Stats{Files: 10, RegularFilesTransferred: 20, TotalTransferredSize: 30}
	want := Stats{Files: 11, RegularFilesTransferred: 22, TotalTransferredSize: 33, Parsed: true}
	if got := a.Add(b); got != want {
		t.Errorf("Add = %+v, want %+v", got, want)
	}
}

// FuzzParseStats checks that no output makes the parser panic or report negative numbers.
func FuzzParseStats(f *testing.F) {
	for _, seed := range []string{stats32, stats30, statsHuman, "Number of files: 1 (reg: 1)", "Literal data: 9.9P bytes"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		s := ParseStats(out)
		for name, n := range map[string]int64{
			"files": s.Files, "transferred": s.RegularFilesTransferred, "size": s.TotalFileSize,
			"transferred size": s.TotalTransferredSize, "literal": s.LiteralData, "sent": s.BytesSent,
		} {
			if n < 0 {
				t.Fatalf("%s = %d < 0 from %q", name, n, out)
			}
		}
	})
}

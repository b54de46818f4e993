package rsyncexec

import (
	"bufio"
	"bytes"
	"math"
	"strconv"
	"strings"
)

// Stats are the numbers of rsync's --stats report (rsync(1), --stats). Fields rsync did not
// print stay zero; Parsed says whether any line was recognised at all.
type Stats struct {
	// Files is "Number of files": every entry rsync considered (the list's entries and the
	// implied directories), with its breakdown by type where rsync 3.1+ prints one.
	Files        int64 `json:"files"`
	RegularFiles int64 `json:"regular_files,omitempty"`
	Dirs         int64 `json:"dirs,omitempty"`
	Symlinks     int64 `json:"symlinks,omitempty"`
	Devices      int64 `json:"devices,omitempty"`
	Specials     int64 `json:"specials,omitempty"`
	CreatedFiles int64 `json:"created_files"`
	DeletedFiles int64 `json:"deleted_files"`
	// RegularFilesTransferred is "Number of regular files transferred" (rsync 3.1+) or
	// "Number of files transferred" (3.0): files whose data was sent.
	RegularFilesTransferred int64 `json:"regular_files_transferred"`
	TotalFileSize           int64 `json:"total_file_size"`
	TotalTransferredSize    int64 `json:"total_transferred_size"`
	LiteralData             int64 `json:"literal_data"`
	MatchedData             int64 `json:"matched_data"`
	FileListSize            int64 `json:"file_list_size"`
	BytesSent               int64 `json:"bytes_sent"`
	BytesReceived           int64 `json:"bytes_received"`
	Parsed                  bool  `json:"parsed"`
}

// Add sums two reports (a directory pass may take two rsync runs).
func (s Stats) Add(o Stats) Stats {
	return Stats{
		Files:                   s.Files + o.Files,
		RegularFiles:            s.RegularFiles + o.RegularFiles,
		Dirs:                    s.Dirs + o.Dirs,
		Symlinks:                s.Symlinks + o.Symlinks,
		Devices:                 s.Devices + o.Devices,
		Specials:                s.Specials + o.Specials,
		CreatedFiles:            s.CreatedFiles + o.CreatedFiles,
		DeletedFiles:            s.DeletedFiles + o.DeletedFiles,
		RegularFilesTransferred: s.RegularFilesTransferred + o.RegularFilesTransferred,
		TotalFileSize:           s.TotalFileSize + o.TotalFileSize,
		TotalTransferredSize:    s.TotalTransferredSize + o.TotalTransferredSize,
		LiteralData:             s.LiteralData + o.LiteralData,
		MatchedData:             s.MatchedData + o.MatchedData,
		FileListSize:            s.FileListSize + o.FileListSize,
		BytesSent:               s.BytesSent + o.BytesSent,
		BytesReceived:           s.BytesReceived + o.BytesReceived,
		Parsed:                  s.Parsed || o.Parsed,
	}
}

// ParseStats reads rsync's --stats report out of its whole stdout. Lines it does not know are
// ignored (file names printed by -v, progress), and when a line appears twice the last one
// wins, since the report is printed last. It never fails: what it cannot read stays zero.
func ParseStats(out []byte) Stats {
	var p statsParser
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
	for sc.Scan() {
		p.line(sc.Text())
	}
	return p.stats
}

// statsParser accumulates the report line by line, so stdout can be parsed as it streams.
type statsParser struct{ stats Stats }

// line reads one line of rsync's stdout.
func (p *statsParser) line(line string) {
	key, value, ok := strings.Cut(strings.TrimSpace(line), ": ")
	if !ok {
		return
	}
	s := &p.stats
	var field *int64
	switch key {
	case "Number of files":
		p.fileCounts(value)
		return
	case "Number of created files":
		field = &s.CreatedFiles
	case "Number of deleted files":
		field = &s.DeletedFiles
	case "Number of regular files transferred", "Number of files transferred":
		field = &s.RegularFilesTransferred
	case "Total file size":
		field = &s.TotalFileSize
	case "Total transferred file size":
		field = &s.TotalTransferredSize
	case "Literal data":
		field = &s.LiteralData
	case "Matched data":
		field = &s.MatchedData
	case "File list size":
		field = &s.FileListSize
	case "Total bytes sent":
		field = &s.BytesSent
	case "Total bytes received":
		field = &s.BytesReceived
	default:
		return
	}
	value, _, _ = strings.Cut(value, " (") // "1,230 (reg: 999, dir: 231)"
	n, ok := parseNumber(strings.TrimSuffix(strings.TrimSpace(value), " bytes"))
	if !ok {
		return
	}
	*field = n
	s.Parsed = true
}

// fileCounts reads "3,456 (reg: 3,000, dir: 400, link: 56)" (rsync 3.1+) or "3456" (3.0).
func (p *statsParser) fileCounts(value string) {
	total, detail, _ := strings.Cut(value, " (")
	n, ok := parseNumber(strings.TrimSpace(total))
	if !ok {
		return
	}
	s := &p.stats
	s.Files, s.Parsed = n, true
	s.RegularFiles, s.Dirs, s.Symlinks, s.Devices, s.Specials = 0, 0, 0, 0, 0
	for _, part := range strings.Split(strings.TrimSuffix(detail, ")"), ", ") {
		kind, count, ok := strings.Cut(part, ": ")
		if !ok {
			continue
		}
		c, ok := parseNumber(strings.TrimSpace(count))
		if !ok {
			continue
		}
		switch kind {
		case "reg":
			s.RegularFiles = c
		case "dir":
			s.Dirs = c
		case "link":
			s.Symlinks = c
		case "dev":
			s.Devices = c
		case "special":
			s.Specials = c
		}
	}
}

// parseNumber reads rsync's numbers: "1234", "1,234" or "1.234" (thousands separators of
// rsync 3.1+, depending on the locale), and "1.23K"/"4,5M" (human-readable, -h), which it
// reads as approximately that many bytes in powers of 1000 (the run adds --no-human-readable
// when the user's options asked for -h, so exact counts are the normal case).
func parseNumber(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	multiplier := 1.0
	switch s[len(s)-1] {
	case 'K', 'k':
		multiplier = 1e3
	case 'M':
		multiplier = 1e6
	case 'G':
		multiplier = 1e9
	case 'T':
		multiplier = 1e12
	case 'P':
		multiplier = 1e15
	}
	if multiplier != 1 {
		// Human-readable: the last separator, if any, is the decimal point.
		f, err := strconv.ParseFloat(strings.ReplaceAll(s[:len(s)-1], ",", "."), 64)
		if err != nil || f < 0 || math.IsNaN(f) || f*multiplier >= math.MaxInt64 {
			return 0, false
		}
		return int64(f * multiplier), true
	}
	// Exact numbers: digits, optionally in groups of three after a separator ("1,234,567").
	digits := make([]byte, 0, len(s))
	group := -1 // digits since the last separator; -1 before the first one
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
			if group >= 0 {
				group++
			}
		case c == ',' || c == '.' || c == '\'':
			if len(digits) == 0 || group > 3 || group >= 0 && group != 3 || len(digits) > 3 && group < 0 {
				return 0, false
			}
			group = 0
		default:
			return 0, false
		}
	}
	if len(digits) == 0 || group >= 0 && group != 3 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

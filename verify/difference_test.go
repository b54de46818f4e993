package verify

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDifferenceJSONRoundTrip(t *testing.T) {
	names := []string{
		"plain", "new\nline", "tab\there", "invalid-\xff\xfe-utf8", "\xed\xa0\x80-surrogate",
		"unicodé/e\u0301", "\x01control\x1f", `quote"back\slash`, ".", "",
	}
	for _, name := range names {
		for _, d := range []Difference{
			{Path: name, Kind: Extra, Source: "absent", Dest: "file"},
			{Path: "dir/" + name, Kind: Target, Source: name, Dest: "t\xfe"},
		} {
			line, err := json.Marshal(d)
			if err != nil {
				t.Fatalf("%q: %v", name, err)
			}
			if strings.ContainsAny(string(line), "\n") {
				t.Errorf("%q: the record spans lines: %s", name, line)
			}
			var back Difference
			if err := json.Unmarshal(line, &back); err != nil {
				t.Fatalf("%q: %v (%s)", name, err, line)
			}
			if back != d {
				t.Errorf("round trip of %q: got %#v from %s", name, back, line)
			}
		}
	}
	// Readers that know only "path" still find it when the name is UTF-8.
	line, _ := json.Marshal(Difference{Path: "a\nb", Kind: Missing, Source: "file", Dest: "absent"})
	if want := `{"path":"a\nb","kind":"missing","source":"file","dest":"absent"}`; string(line) != want {
		t.Errorf("got %s, want %s", line, want)
	}
	line, _ = json.Marshal(Difference{Path: "a\xff", Kind: Missing})
	if want := `{"path_b64":"Yf8=","kind":"missing","source":"","dest":""}`; string(line) != want {
		t.Errorf("got %s, want %s", line, want)
	}
}

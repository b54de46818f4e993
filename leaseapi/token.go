package leaseapi

import (
	"crypto/rand"
	"fmt"
	"os"
	"strings"
)

// TokenHeader carries the API token where the Authorization header cannot: the API server's
// service proxy (krsync status -n) consumes Authorization (it authenticates the caller to the
// API server itself) and does not pass it on. The coordinator accepts either.
const TokenHeader = "X-Krsync-Token"

// NewToken returns a random API token (crypto/rand, 26 base32 characters, 130 bits).
func NewToken() string { return rand.Text() }

// ReadToken returns the API token from file when one is named (surrounding white space
// trimmed; an empty file is an error), else value trimmed, which may be empty.
func ReadToken(file, value string) (string, error) {
	if file == "" {
		return strings.TrimSpace(value), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return t, nil
}

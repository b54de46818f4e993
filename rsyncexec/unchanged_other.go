//go:build !linux

package rsyncexec

// quickCheckSafe: the pre-check needs Linux's openat2; elsewhere every entry goes to rsync.
func quickCheckSafe([]string) bool { return false }

func dropUnchanged(_, _ string, list []byte, _ bool) ([]byte, bool, int64) { return list, false, 0 }

// Command slowfs mounts a directory through bench/slowfs: every metadata request costs
// -delay. It serves until SIGINT or SIGTERM, then unmounts and writes the request counts
// as JSON to -counts (stdout when empty); SIGUSR1 writes the counts so far without
// unmounting.
//
//	go run ./bench/slowfs/cmd/slowfs --delay 1ms --counts /tmp/counts.json SRC MNT
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/krsync/krsync/bench/slowfs"
)

type cli struct {
	Delay           time.Duration `help:"Delay of each metadata request." default:"1ms"`
	DataDelayPerMiB time.Duration `name:"data-delay-per-mib" help:"Delay per MiB read or written." default:"0"`
	EntryTTL        time.Duration `name:"entry-ttl" help:"How long the kernel may cache names." default:"0"`
	AttrTTL         time.Duration `name:"attr-ttl" help:"How long the kernel may cache attributes." default:"0"`
	Counts          string        `help:"Write the request counts as JSON to this file (default stdout)." type:"path"`
	Debug           bool          `help:"Log every FUSE request."`
	Backing         string        `arg:"" help:"Directory to mirror." type:"existingdir"`
	Mountpoint      string        `arg:"" help:"Empty directory to mount on." type:"existingdir"`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Description("A FUSE pass-through that delays every metadata request (benchmarks only)."))
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "slowfs:", err)
		os.Exit(1)
	}
}

func run(c cli) error {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	f, err := slowfs.Mount(c.Backing, c.Mountpoint, slowfs.Config{Delay: c.Delay,
		DataDelayPerMiB: c.DataDelayPerMiB, EntryTTL: c.EntryTTL, AttrTTL: c.AttrTTL, Debug: c.Debug})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "slowfs: %s mounted on %s, %v per metadata request\n", c.Backing, c.Mountpoint, c.Delay)
	for sig := range signals {
		if sig == syscall.SIGUSR1 {
			if err := writeCounts(c.Counts, f.Counts()); err != nil {
				return err
			}
			continue
		}
		if err := f.Unmount(); err != nil {
			fmt.Fprintln(os.Stderr, err, "(still in use? retry the signal)")
			continue
		}
		return writeCounts(c.Counts, f.Counts())
	}
	return nil
}

func writeCounts(path string, counts slowfs.Counts) error {
	out, err := json.MarshalIndent(counts, "", "  ")
	if err != nil {
		return err
	}
	out = append(out, '\n')
	if path == "" {
		_, err = os.Stdout.Write(out)
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

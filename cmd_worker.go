package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/pathcheck"
	"github.com/krsync/krsync/rsyncexec"
	"github.com/krsync/krsync/worker"
)

// WorkerCmd is the `krsync worker` command: lease partitions from a coordinator and rsync them
// until it says all work is done.
type WorkerCmd struct {
	Coordinator   string        `help:"URL of the coordinator's lease API, e.g. http://krsync-coordinator:8080." required:""`
	Source        string        `help:"Source root, where the coordinator's --source is mounted." default:"/source"`
	Dest          string        `help:"Destination root; must exist and be writable." default:"/dest"`
	RsyncOpts     string        `help:"rsync options, split like a shell (default: ${rsyncOptions})."`
	Rsync         string        `help:"The rsync binary to run." default:"rsync"`
	TokenFile     string        `help:"File holding the lease API token (or set KRSYNC_TOKEN)."`
	Token         string        `help:"The lease API token; prefer KRSYNC_TOKEN or --token-file, which stay out of ps." hidden:""`
	Name          string        `help:"Name reported to the coordinator (default: the hostname, which is the pod name)." env:"KRSYNC_WORKER_NAME,KRSYNC_NAME"`
	CoordinatorCA string        `help:"PEM bundle that verifies the coordinator's TLS certificate."`
	GiveUpAfter   time.Duration `help:"How long to keep retrying an unreachable coordinator before exiting with an error." default:"5m"`
	Wait          time.Duration `help:"Longest wait for one lease while the coordinator is still walking." default:"20s" hidden:""`
}

// Run checks the configuration, then leases and copies partitions until the coordinator says
// all work is done. Nothing is leased before the destination, the source and rsync are known good.
func (c WorkerCmd) Run(ctx context.Context, log zerolog.Logger, streams Streams) error {
	switch {
	case c.Source == "":
		return usagef("--source is empty: name the source root")
	case c.Dest == "":
		return usagef("--dest is empty: name the destination root")
	}
	args, err := rsyncexec.ParseArgs(c.RsyncOpts)
	if err != nil {
		return usagef("--rsync-opts: %v", err)
	}
	rsyncBinary, err := rsyncexec.LookPath(c.Rsync)
	if err != nil {
		return usagef("%v", err)
	}
	source, err := pathcheck.ResolveSource(c.Source)
	if err != nil {
		return usagef("%v (--source)", err)
	}
	if err := pathcheck.Dest(c.Dest); err != nil {
		return usagef("%v (--dest)", err)
	}
	dest, err := filepath.Abs(c.Dest)
	if err == nil {
		dest, err = filepath.EvalSymlinks(dest)
	}
	if err != nil {
		return usagef("destination %s: %v (--dest)", c.Dest, err)
	}
	// The same check as krsync local's: a destination inside the source (or the same
	// directory) would copy the copy, and a source inside the destination be written over.
	if err := pathcheck.Overlap(source, dest); err != nil {
		return usagef("%v", err)
	}
	token, err := apiToken(c.TokenFile, c.Token)
	if err != nil {
		return err
	}
	name := c.Name
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return fmt.Errorf("worker name: %w; set --name", err)
		}
	}
	client, err := leaseapi.NewClient(c.Coordinator, leaseapi.ClientOptions{
		Token: token, GiveUpAfter: c.GiveUpAfter, CAFile: c.CoordinatorCA,
	})
	if err != nil {
		return usagef("%v (--coordinator)", err)
	}
	log.Info().Str("worker", name).Str("coordinator", c.Coordinator).Str("source", c.Source).Str("dest", c.Dest).Msg("worker starting")
	err = worker.Run(ctx, worker.Config{
		Client: client, Name: name, Source: c.Source, Dest: c.Dest,
		RsyncBinary: rsyncBinary, RsyncArgs: args, Wait: c.Wait,
	}, log)
	if errors.Is(err, worker.ErrSourceMismatch) {
		return usagef("%v", err) // a mount to fix, like a bad --source: exit 2
	}
	if err != nil {
		return err
	}
	log.Info().Str("worker", name).Msg("all work done")
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/pathcheck"
	"github.com/krsync/krsync/rsyncexec"
)

// CoordinatorCmd is the `krsync coordinator` command: walk the source and serve its
// partitions over the work-lease API until every one is done or failed.
type CoordinatorCmd struct {
	Source            string        `help:"Directory to copy (the root of every partition)." required:"" placeholder:"DIR"`
	Dest              string        `help:"The destination as the workers mount it; part of the journal's identity, and where --state-dir must not clash with the source." default:"/dest" placeholder:"DIR"`
	Listen            string        `help:"Address the lease API listens on." default:":8080"`
	FpartOpts         string        `help:"fpart options for the walk; without -f/-s/-n, live partitions of --files-per-partition entries." default:"${fpartOptions}"`
	FilesPerPartition int64         `help:"Largest partition, in entries, when --fpart-opts has none of -f/-s/-n (the first ones hold 32 and they grow with the walk)." default:"${filesPerPartition}"`
	LeaseTTL          time.Duration `help:"A lease not renewed within this time expires and its partition is handed out again." default:"30s"`
	MaxAttempts       int           `help:"Leases a partition gets before it is reported failed." default:"3"`
	MaxWait           time.Duration `help:"Longest lease long poll while the walk goes on." default:"30s"`
	StateDir          string        `help:"Directory of the journal: a coordinator restarted on it resumes. Empty: no resume." placeholder:"DIR"`
	TokenFile         string        `help:"File holding the lease API's bearer token (or set KRSYNC_TOKEN)." placeholder:"FILE"`
	Token             string        `help:"The lease API's bearer token; prefer KRSYNC_TOKEN or --token-file (a flag shows in ps)." hidden:""`
	TLSCert           string        `help:"PEM certificate: serve the API over HTTPS (with --tls-key)." placeholder:"FILE"`
	TLSKey            string        `help:"PEM private key of --tls-cert." placeholder:"FILE"`
	Linger            time.Duration `help:"After the end, how long to keep telling workers there is no more work (returns earlier once every worker was told)." default:"1m"`
	Mirror            bool          `help:"Make the destination an exact copy: the workers delete what it holds and the source does not (never what -x/-X exclude, never what the source gains meanwhile)."`
	DryRun            bool          `help:"With --mirror: the workers copy nothing, delete nothing, and log what --mirror would delete."`
	RequireEmptyDest  bool          `help:"Refuse to start (exit 2) when --dest holds anything but this run's --state-dir and an empty lost+found: for a copy into a volume that may hold data nobody meant to lose (krsync migrate sets it for a claim it did not create)."`

	// Kubernetes: --create-workers and friends; runCoordinator (cmd_coordinator_kube.go) uses them.
	KubeFlags `embed:""`

	// --verify, --verify-checksum, --summary-json (cmd_aftercopy.go).
	AfterCopy AfterCopyFlags `embed:""`
}

// KubeFlags are the coordinator's Kubernetes flags, translated into kube.Options.
type KubeFlags struct {
	CreateWorkers  bool   `help:"Create and drive the worker Job from --worker-template (when running in a Pod)." group:"Kubernetes"`
	Kubeconfig     string `help:"kubeconfig file (default: the in-cluster configuration)." placeholder:"FILE" group:"Kubernetes"`
	WorkerTemplate string `help:"The worker Job template (YAML)." default:"${workerTemplate}" placeholder:"FILE" group:"Kubernetes"`
	Parallelism    int    `help:"Most worker pods at a time; the Job starts with fewer while there are fewer partitions." default:"${parallelism}" group:"Kubernetes"`
	PodName        string `help:"This Pod's name (downward API): owner of the worker Job." group:"Kubernetes"`
	PodNamespace   string `help:"This Pod's namespace (downward API)." group:"Kubernetes"`
	NodeName       string `help:"This Pod's node (downward API): ReadWriteOnce claims pin the workers there." group:"Kubernetes"`
	SourcePVC      string `help:"Source claim for the workers (default: the claim of this Pod's volume \"source\")." group:"Kubernetes"`
	DestPVC        string `help:"Destination claim for the workers (default: the claim of this Pod's volume \"dest\")." group:"Kubernetes"`
	TerminationLog string `help:"File the outcome is written to at the end (the container's terminationMessagePath)." placeholder:"FILE" group:"Kubernetes"`
}

// options translates the flags into the driver's options.
func (f KubeFlags) options() kube.Options {
	return kube.Options{
		CreateWorkers: f.CreateWorkers, Kubeconfig: f.Kubeconfig, WorkerTemplate: f.WorkerTemplate,
		Parallelism: f.Parallelism, PodName: f.PodName, PodNamespace: f.PodNamespace, NodeName: f.NodeName,
		SourcePVC: f.SourcePVC, DestPVC: f.DestPVC, TerminationLog: f.TerminationLog,
	}
}

// Run walks --source and serves the lease API until the end; exit 1 when the copy is
// incomplete, 2 for bad input (a foreign journal in --state-dir included).
func (cmd CoordinatorCmd) Run(ctx context.Context, log zerolog.Logger, streams Streams) error {
	cfg, err := cmd.config(log)
	if err == nil {
		err = cmd.AfterCopy.check(cmd.Source, cmd.Dest)
	}
	if err != nil {
		return cmd.failEarly(err, log)
	}
	var differences *diffLog
	cfg.Verify, differences = cmd.AfterCopy.verifyConfig(log)
	// With --create-workers, the claims are read first: their volumes are part of the
	// journal's identity (inside a Pod the paths are always /source and /dest).
	d, err := cmd.connect(ctx, log)
	if err != nil {
		return cmd.failEarly(err, log)
	}
	if d != nil {
		cfg.Volumes = d.VolumeIdentity()
		// The walk leaves out what the destination holds unchanged only when the workers
		// certainly see the same destination and make the same quick check.
		if d.WorkersSeeDest(cmd.Dest) {
			dc, err := rsyncexec.OpenDestCompare(cmd.Dest)
			if err != nil {
				return cmd.failEarly(err, log)
			}
			defer dc.Close()
			cfg.CompareDest = dc.Compare
		}
		log.Info().Bool("compare_dest", cfg.CompareDest != nil).Msg("the walk compares with the destination when the workers see it as this Pod does")
	}
	c, err := coordinator.New(cfg, log)
	if err != nil {
		return cmd.failEarly(usageError{err}, log)
	}
	ln, err := net.Listen("tcp", cmd.Listen)
	if err != nil {
		return cmd.failEarly(fmt.Errorf("--listen %s: %w", cmd.Listen, err), log)
	}

	// c.Run, plus the worker Job driver with --create-workers (cmd_coordinator_kube.go).
	status, err := cmd.runCoordinator(ctx, c, d, ln, log)
	fmt.Fprintf(streams.Stdout, "krsync coordinator: %s\n", status.Summary())
	var verified *leaseapi.VerifyRecord
	if !status.StartedAt.IsZero() && (status.Partitions.Total > 0 || status.EntriesWalked > 0) {
		var rec leaseapi.Record
		rec, err = cmd.AfterCopy.finish(log, streams, copyRun{status: status, took: time.Since(status.StartedAt), err: err,
			source: cmd.Source, dest: cmd.Dest, differences: differences})
		verified = rec.Verify
	}
	// Last, so that the termination message and the Events tell --verify's outcome too.
	cmd.recordOutcome(ctx, d, status, verified, err, log)
	switch {
	case errors.Is(err, coordinator.ErrInvalidConfig):
		return usageError{err}
	case errors.Is(err, coordinator.ErrIncomplete):
		return exitStatus{code: 1, err: err}
	}
	return err
}

// failEarly returns err, a reason the run could not start, after writing it to the
// termination message: a failed Job's Pod then says why without its logs.
func (cmd CoordinatorCmd) failEarly(err error, log zerolog.Logger) error {
	cmd.writeTerminationMessage(leaseapi.Status{}, nil, err, log)
	return err
}

// config turns the flags into a coordinator.Config.
func (cmd CoordinatorCmd) config(log zerolog.Logger) (coordinator.Config, error) {
	if err := pathcheck.Source(cmd.Source); err != nil {
		return coordinator.Config{}, usageError{err}
	}
	opts, err := coordinator.ParsePartitioner(cmd.FpartOpts, cmd.FilesPerPartition, cmd.Parallelism)
	if err != nil {
		return coordinator.Config{}, usagef("--fpart-opts: %v", err)
	}
	if cmd.MaxAttempts < 1 {
		return coordinator.Config{}, usagef("--max-attempts must be at least 1")
	}
	if cmd.FilesPerPartition < 1 {
		return coordinator.Config{}, usagef("--files-per-partition %d: need at least 1", cmd.FilesPerPartition)
	}
	if err := coordinator.CheckRootNotExcluded(opts, cmd.Source); err != nil {
		return coordinator.Config{}, usagef("--fpart-opts: %v", err)
	}
	if cmd.LeaseTTL <= 0 || cmd.MaxWait < 0 || cmd.Linger < 0 {
		return coordinator.Config{}, usagef("--lease-ttl must be positive, --max-wait and --linger not negative")
	}
	if cmd.RequireEmptyDest {
		if err := requireEmptyDest(cmd.Dest, cmd.StateDir); err != nil {
			return coordinator.Config{}, usageError{err}
		}
	}
	token, err := cmd.token(log)
	if err != nil {
		return coordinator.Config{}, err
	}
	return coordinator.Config{
		Source:      cmd.Source,
		Dest:        cmd.Dest,
		Partitioner: opts,
		LeaseTTL:    cmd.LeaseTTL,
		MaxAttempts: cmd.MaxAttempts,
		MaxWait:     cmd.MaxWait,
		Token:       token,
		StateDir:    cmd.StateDir,
		Linger:      cmd.Linger,
		TLSCertFile: cmd.TLSCert,
		TLSKeyFile:  cmd.TLSKey,
		Mirror:      cmd.Mirror,
		DryRun:      cmd.DryRun,
	}, nil
}

// token reads the API token from --token-file or KRSYNC_TOKEN. Without either it makes a
// random one, writes it to <state-dir>/token when there is a state dir (so a restart keeps
// it), and logs where to find it: the API is never open to anyone who can reach the port.
func (cmd CoordinatorCmd) token(log zerolog.Logger) (string, error) {
	if t, err := apiToken(cmd.TokenFile, cmd.Token); err != nil || t != "" {
		return t, err
	}
	if cmd.StateDir == "" {
		t := leaseapi.NewToken()
		log.Warn().Str("token", t).Msg("no --token-file or KRSYNC_TOKEN: generated this token; give it to the workers as KRSYNC_TOKEN")
		return t, nil
	}
	path := filepath.Join(cmd.StateDir, "token")
	if t, err := leaseapi.ReadToken(path, ""); err == nil {
		log.Info().Str("token_file", path).Msg("no --token-file or KRSYNC_TOKEN: using the token generated by an earlier run")
		return t, nil
	}
	if err := os.MkdirAll(cmd.StateDir, 0o700); err != nil {
		return "", fmt.Errorf("--state-dir: %w", err)
	}
	t := leaseapi.NewToken()
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("--state-dir: write the generated token: %w", err)
	}
	log.Warn().Str("token_file", path).Msg("no --token-file or KRSYNC_TOKEN: generated a token; give it to the workers (KRSYNC_TOKEN or --token-file)")
	return t, nil
}

// apiToken reads the lease API token from --token-file, else from --token or KRSYNC_TOKEN;
// every command that talks to the API reads it here.
func apiToken(file, value string) (string, error) {
	t, err := leaseapi.ReadToken(file, value)
	if err != nil {
		return "", usagef("--token-file: %v", err)
	}
	return t, nil
}

// requireEmptyDest is --require-empty-dest: dest may hold only stateDir (when it lies in
// dest: a restarted coordinator of this run finds its journal there, and what dest holds is
// this run's) and an empty lost+found (a new ext4 volume has one). Anything else is data
// that krsync did not write, which a --mirror run would delete.
func requireEmptyDest(dest, stateDir string) error {
	entries, err := os.ReadDir(dest)
	if err != nil {
		return fmt.Errorf("--require-empty-dest: %w", err)
	}
	if rel, ok := strings.CutPrefix(filepath.Clean(stateDir), filepath.Clean(dest)+"/"); ok && !strings.Contains(rel, "/") {
		if _, err := os.Stat(filepath.Join(stateDir, coordinator.JournalFile)); err == nil {
			return nil
		}
	}
	var found []string
	for _, e := range entries {
		if e.Name() == "lost+found" && e.IsDir() {
			if inner, err := os.ReadDir(filepath.Join(dest, e.Name())); err == nil && len(inner) == 0 {
				continue
			}
		}
		found = append(found, e.Name())
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("--require-empty-dest: %s %s (%d entries, e.g. %q): give an empty volume, or empty this one", dest, kube.DestNotEmpty, len(found), found[0])
}

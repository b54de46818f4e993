package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/migrate"
	"github.com/krsync/krsync/rsyncexec"
)

// MigrateCmd is the `krsync migrate` command: move the workloads of a namespace from one
// PersistentVolumeClaim to another, copying while they run and again, briefly, while down.
type MigrateCmd struct {
	Namespace        string        `short:"n" help:"Namespace of the claims and the workloads (default: the kubeconfig's namespace)."`
	SourcePVC        string        `help:"The claim to move away from; it is never deleted nor written." required:""`
	DestPVC          string        `help:"The claim to move to: an existing claim, or the name of the one --dest-storage-class creates (default OLD-SC)."`
	DestStorageClass string        `help:"Create the new claim in this storage class, with the old one's access modes and size." placeholder:"SC"`
	DestSize         string        `help:"Size of the claim --dest-storage-class creates, at least the old one's (default: the old one's)." placeholder:"SIZE"`
	Parallelism      int           `help:"Most worker pods of each copy." default:"${parallelism}"`
	Image            string        `help:"krsync image of the copy's pods." default:"${image}"`
	PullPolicy       string        `help:"Image pull policy." default:"${pullPolicy}" enum:"Always,IfNotPresent,Never"`
	FpartOpts        string        `help:"fpart options of the coordinator's walk." default:"${fpartOptions}"`
	RsyncOpts        string        `help:"rsync options of the workers." default:"${rsyncOptions}"`
	NoWarmCopy       bool          `help:"Do not copy while the application runs: scale down first, then copy everything."`
	OverwriteDest    bool          `help:"Let the copy delete what an existing --dest-pvc holds (without it, a claim krsync did not create must be empty)."`
	DryRun           bool          `help:"Print the plan (or, for a migration under way, where it stands) and change nothing."`
	Rollback         bool          `help:"Put the workloads of an unfinished migration back on --source-pvc with their replica counts."`
	Timeout          time.Duration `help:"Longest wait for the Pods to go, or to become ready." default:"10m"`
	Kubeconfig       string        `help:"kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)." placeholder:"FILE"`
}

// Run translates the flags into a migrate.Config and runs the migration or the rollback.
func (cmd MigrateCmd) Run(ctx context.Context, log zerolog.Logger, streams Streams) error {
	cfg := migrate.Config{
		Namespace: cmd.Namespace, SourcePVC: cmd.SourcePVC, DestPVC: cmd.DestPVC,
		DestStorageClass: cmd.DestStorageClass, NoWarmCopy: cmd.NoWarmCopy, OverwriteDest: cmd.OverwriteDest, Timeout: cmd.Timeout,
	}
	if cmd.DestSize != "" {
		q, err := resource.ParseQuantity(cmd.DestSize)
		if err != nil {
			return usagef("--dest-size %q: want a size like 20Gi: %v", cmd.DestSize, err)
		}
		cfg.DestSize = &q
	}
	if cmd.Rollback && cmd.DryRun {
		return usagef("--rollback and --dry-run: give one of them")
	}
	if _, err := coordinator.ParsePartitioner(cmd.FpartOpts, 0, cmd.Parallelism); err != nil {
		return usagef("--fpart-opts: %v", err)
	}
	args, err := rsyncexec.ParseArgs(cmd.RsyncOpts)
	if err != nil {
		return usagef("--rsync-opts: %v", err)
	}
	if err := rsyncexec.ValidateArgs(args); err != nil {
		return usagef("--rsync-opts: %v", err)
	}
	cfg.Copy = kube.DefaultParams()
	cfg.Copy.FpartOpts, cfg.Copy.RsyncOpts = cmd.FpartOpts, cmd.RsyncOpts
	cfg.Copy.Parallelism, cfg.Copy.Image, cfg.Copy.PullPolicy = cmd.Parallelism, cmd.Image, cmd.PullPolicy
	cfg.Copy.Token = leaseapi.NewToken()
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	check := cfg.Copy
	check.Namespace, check.SourcePVC, check.DestPVC = cfg.Namespace, cfg.SourcePVC, cfg.Dest()
	if err := check.Validate(); err != nil {
		return usageError{err}
	}
	cs, rc, ns, err := kube.Clientset(cmd.Kubeconfig)
	if err != nil {
		return err
	}
	if cfg.Namespace == "" {
		cfg.Namespace = ns
	}
	copier, err := kube.NewCopier(rc, cs, cfg.Namespace, cfg.CopyRun())
	if err != nil {
		return err
	}
	env := migrate.Env{CS: cs, Copier: copier, Log: log, Out: streams.Stdout}
	if cmd.Rollback {
		err = migrate.Rollback(ctx, env, cfg)
	} else {
		err = migrate.Run(ctx, env, cfg, cmd.DryRun)
	}
	if errors.Is(err, migrate.ErrInUse) {
		return usageError{err}
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted; the state is on claim %s: run the same command again to resume, or add --rollback: %w", cfg.Dest(), err)
	}
	return err
}

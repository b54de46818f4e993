package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// runCoordinator runs c until the end. With --create-workers it drives the worker Job alongside
// (kube.Driver): an error from the Kubernetes side (a forbidden verb, the Job failed or
// deleted) stops the coordinator and is the command's error, and a run given up for good
// deletes the worker Job. The outcome is recorded afterwards, by recordOutcome.
func (cmd CoordinatorCmd) runCoordinator(ctx context.Context, c *coordinator.Coordinator, d *kube.Driver, ln net.Listener, log zerolog.Logger) (leaseapi.Status, error) {
	if cmd.usesPublishedToken() {
		log.Warn().Msg("THE LEASE API TOKEN IS THE PUBLISHED DEFAULT from krsync's manifests/: anyone who read them can steer this copy. " +
			"Put a random token in the run's token Secret (krsync-token by default; krsync manifests does) and restart.")
	}
	if d == nil {
		return c.Run(ctx, ln)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	driveCtx, stopDrive := context.WithCancel(ctx)
	defer stopDrive()
	var driveErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if driveErr = d.Run(driveCtx, c); driveErr != nil {
			stopRun() // the coordinator cannot finish without its workers
		}
	}()
	status, err := c.Run(runCtx, ln)
	stopDrive()
	wg.Wait()
	if driveErr != nil {
		err = driveErr
	}

	if err != nil && !errors.Is(err, coordinator.ErrIncomplete) && !errors.Is(err, context.Canceled) {
		// Given up for good: workers left running would only retry a coordinator that is gone.
		// The run is over, ctx may be too: a bounded time of its own.
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		if derr := d.StopWorkers(endCtx); derr != nil {
			log.Warn().Err(derr).Msg("could not delete the worker Job")
		}
	}
	return status, err
}

// recordOutcome records how the run ended, after --verify when it ran (verify is its result,
// runErr the command's error then): in the termination message and, with --create-workers,
// as Events on the worker Job.
func (cmd CoordinatorCmd) recordOutcome(ctx context.Context, d *kube.Driver, status leaseapi.Status, verify *leaseapi.VerifyRecord, runErr error, log zerolog.Logger) {
	if d != nil {
		// The run is over, ctx may be too: record the outcome within a bounded time of its own.
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		if cmd.usesPublishedToken() {
			d.Warn(endCtx, "PublishedToken", "the lease API token is the published default from krsync's manifests/; replace the run's token Secret (krsync-token by default) with a random one")
		}
		d.Finish(endCtx, status, verify, runErr)
	}
	cmd.writeTerminationMessage(status, verify, runErr, log)
}

// connect prepares the worker Job driver with --create-workers; nil without.
func (cmd CoordinatorCmd) connect(ctx context.Context, log zerolog.Logger) (*kube.Driver, error) {
	if !cmd.CreateWorkers {
		return nil, nil
	}
	return kube.Connect(ctx, cmd.options(), log)
}

// usesPublishedToken says whether the token is the one published in manifests/.
func (cmd CoordinatorCmd) usesPublishedToken() bool {
	token, err := leaseapi.ReadToken(cmd.TokenFile, cmd.Token)
	return err == nil && token == kube.PublishedToken
}

// writeTerminationMessage writes the outcome to --termination-log, when set.
func (cmd CoordinatorCmd) writeTerminationMessage(status leaseapi.Status, verify *leaseapi.VerifyRecord, runErr error, log zerolog.Logger) {
	if cmd.TerminationLog == "" {
		return
	}
	if err := kube.WriteTerminationMessage(cmd.TerminationLog, kube.Summary(status, verify, runErr)); err != nil {
		log.Warn().Err(err).Msg("could not write the termination message")
	}
}

package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/krsync/krsync/kube"
)

// Env is what a migration works with.
type Env struct {
	CS     kubernetes.Interface
	Copier *kube.Copier
	Log    zerolog.Logger
	// Out receives the plan and one line per step, for the operator.
	Out io.Writer
	// Lock times the claims' locks; zero is DefaultLockTiming.
	Lock LockTiming
}

// lock takes the locks of both claims for the migration's duration (see claimLock). The
// context it returns ends when a lock is lost; done releases them and, when that is why
// the migration stopped, says so in its error.
func (m *migration) lock(ctx context.Context) (context.Context, func(*error), error) {
	timing := m.Lock
	if timing == (LockTiming{}) {
		timing = DefaultLockTiming
	}
	lockCtx, unlock, err := lockClaims(ctx, m.CS, m.ns, []string{m.cfg.SourcePVC, m.cfg.Dest()}, timing, m.Out)
	if err != nil {
		return nil, nil, err
	}
	return lockCtx, func(errp *error) {
		if cause := context.Cause(lockCtx); *errp != nil && errors.Is(cause, ErrLockLost) {
			*errp = fmt.Errorf("%w (stopped at: %v); run the same command again to resume", cause, *errp)
		}
		unlock()
	}, nil
}

// migration is one run of krsync migrate.
type migration struct {
	Env
	cfg Config
	ns  string
	dst *corev1.PersistentVolumeClaim
	st  *State
}

// Run plans the migration cfg describes, or resumes the one the new claim records, and
// carries it to its end; with dryRun it prints the plan (or the steps left) and stops.
func Run(ctx context.Context, env Env, cfg Config, dryRun bool) (err error) {
	m := &migration{Env: env, cfg: cfg, ns: cfg.Namespace}
	if !dryRun {
		var unlock func(*error)
		if ctx, unlock, err = m.lock(ctx); err != nil {
			return err
		}
		defer unlock(&err)
	}
	if err := m.load(ctx); err != nil {
		return err
	}
	switch {
	case m.st != nil && m.st.Phase == Done:
		fmt.Fprintf(m.Out, "%s was migrated to %s already (downtime %s); nothing to do\n", cfg.SourcePVC, m.dst.Name, m.st.Downtime)
		return nil
	case m.st == nil || m.st.Phase == RolledBack:
		plan, err := MakePlan(ctx, m.CS, cfg)
		if err != nil {
			return err
		}
		plan.Print(m.Out)
		if dryRun {
			return nil
		}
		if err := m.begin(ctx, plan); err != nil {
			return err
		}
	default:
		verb := "resuming"
		if dryRun {
			verb = "under way"
		}
		fmt.Fprintf(m.Out, "%s: the migration of %s to %s in namespace %s, after step %q (workloads: %v); steps left: %v\n",
			verb, cfg.SourcePVC, m.dst.Name, m.ns, m.st.Phase, m.st.Workloads, phaseOrder[phaseIndex(m.st.Phase)+1:])
		if dryRun {
			return nil
		}
		if m.cfg.OverwriteDest && !m.st.DestClaimed {
			m.st.DestClaimed = true
			if err := m.save(ctx); err != nil {
				return err
			}
		}
	}
	steps := []struct {
		done Phase
		run  func(context.Context) error
	}{
		{WarmCopied, m.warmCopy},
		{ScaledDown, m.scaleDown},
		{FinalCopied, m.finalCopy},
		{Switched, m.switchClaims},
		{Done, m.scaleUp},
	}
	for _, s := range steps {
		if m.st.Phase.atLeast(s.done) {
			continue
		}
		if err := s.run(ctx); err != nil {
			return err
		}
		m.st.Phase = s.done
		if err := m.save(ctx); err != nil {
			return err
		}
	}
	return nil
}

// load reads the new claim and the state it records (both nil when it does not exist).
func (m *migration) load(ctx context.Context) error {
	dst, err := m.CS.CoreV1().PersistentVolumeClaims(m.ns).Get(ctx, m.cfg.Dest(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get claim %s/%s: %w", m.ns, m.cfg.Dest(), err)
	}
	st, err := stateOf(dst)
	if err != nil {
		return err
	}
	if st != nil && st.Source != m.cfg.SourcePVC {
		return fmt.Errorf("claim %s records a migration from %s, not from %s: give --source-pvc %s, or another --dest-pvc", dst.Name, st.Source, m.cfg.SourcePVC, st.Source)
	}
	m.dst, m.st = dst, st
	return nil
}

// begin creates the new claim (or marks the existing one) with the plan, before anything
// else changes: from then on a rerun finds the migration there.
func (m *migration) begin(ctx context.Context, plan *Plan) error {
	m.st = &State{Source: m.cfg.SourcePVC, Phase: Planned, Workloads: plan.Workloads, DestClaimed: plan.DestClaimed != ""}
	if m.st.Workloads == nil {
		m.st.Workloads = []Workload{}
	}
	if !plan.CreateDest {
		m.dst = plan.Dest
		return m.save(ctx)
	}
	anno, err := m.st.annotations()
	if err != nil {
		return err
	}
	pvc := plan.Dest.DeepCopy()
	pvc.Annotations = anno
	m.dst, err = m.CS.CoreV1().PersistentVolumeClaims(m.ns).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create claim %s/%s: %w", m.ns, pvc.Name, err)
	}
	fmt.Fprintf(m.Out, "created claim %s\n", pvc.Name)
	return nil
}

// save writes the state into the new claim's annotations.
func (m *migration) save(ctx context.Context) error {
	anno, err := m.st.annotations()
	if err != nil {
		return err
	}
	patch := map[string]any{}
	for k, v := range anno {
		patch[k] = v
	}
	for _, k := range []string{AnnoDownSince, AnnoDowntime, AnnoPods, AnnoDestClaimed} {
		if _, ok := anno[k]; !ok {
			patch[k] = nil // a merge patch's null removes what an earlier migration left
		}
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": patch}})
	if err != nil {
		return err
	}
	dst, err := m.CS.CoreV1().PersistentVolumeClaims(m.ns).Patch(ctx, m.dst.Name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("record step %s on claim %s/%s: %w", m.st.Phase, m.ns, m.dst.Name, err)
	}
	m.dst = dst
	m.Log.Debug().Str("phase", string(m.st.Phase)).Msg("recorded the migration's state")
	return nil
}

// copyParams are the coordinator's settings for one pass from the old claim to the new.
func (m *migration) copyParams(verify bool) kube.Params {
	p := m.cfg.Copy
	p.SourcePVC, p.DestPVC = m.cfg.SourcePVC, m.dst.Name
	p.Mirror, p.DryRun, p.Verify = true, false, verify
	// --mirror deletes what the new claim holds: unless that is known to be the
	// migration's to replace, the coordinator refuses a claim holding anything.
	p.RequireEmptyDest = !m.st.DestClaimed
	return p
}

// runCopy runs (or follows, after an interruption) the copy pass and returns its outcome.
func (m *migration) runCopy(ctx context.Context, pass string, verify bool, node string) (string, error) {
	adopted, err := m.Copier.Start(ctx, m.copyParams(verify), string(m.dst.UID)+"-"+pass, node)
	if err != nil {
		return "", fmt.Errorf("%s copy: %w", pass, err)
	}
	if adopted {
		fmt.Fprintf(m.Out, "%s copy: following the copy an earlier run started\n", pass)
	}
	outcome, err := m.Copier.Wait(ctx)
	if err != nil && strings.Contains(err.Error(), kube.DestNotEmpty) {
		return "", fmt.Errorf("%w; krsync migrate copies only into a claim that is empty, that it created, or that it migrated from: if claim %s holds what an earlier attempt of this migration copied, or data you mean to delete, run again with --overwrite-dest", err, m.dst.Name)
	}
	if err == nil && !m.st.DestClaimed {
		// The coordinator found the claim empty, and it holds the copy now.
		m.st.DestClaimed = true
		if err := m.save(ctx); err != nil {
			return "", err
		}
	}
	return outcome, err
}

// warmCopy copies while the application runs: the bulk of the bytes moves without downtime.
// What changes under it, the final pass copies.
func (m *migration) warmCopy(ctx context.Context) error {
	src, err := m.CS.CoreV1().PersistentVolumeClaims(m.ns).Get(ctx, m.cfg.SourcePVC, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get claim %s/%s: %w", m.ns, m.cfg.SourcePVC, err)
	}
	if why := warmCopySkipped(m.cfg, src); why != "" {
		fmt.Fprintf(m.Out, "warm copy: skipped (%s)\n", why)
		return nil
	}
	node, err := sourceNode(ctx, m.CS, m.ns, src)
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Fprintf(m.Out, "warm copy: %s to %s while the application runs\n", m.cfg.SourcePVC, m.dst.Name)
	outcome, err := m.runCopy(ctx, "warm", false, node)
	if err != nil {
		// A copy of a changing tree still completes (rsync's vanished files are not
		// failures): a failure here would fail the final pass too, so stop while the
		// application still runs.
		return fmt.Errorf("warm copy: %w; nothing was scaled down: fix the cause and run again", err)
	}
	fmt.Fprintf(m.Out, "warm copy: done in %s: %s\n", time.Since(start).Round(time.Second/10), outcome)
	return nil
}

// scaleDown stops every workload, recording in each what brings it back, and waits until no
// Pod mounts the old claim. The downtime starts here.
func (m *migration) scaleDown(ctx context.Context) error {
	if m.st.DownSince.IsZero() {
		m.st.DownSince = time.Now()
		if err := m.save(ctx); err != nil {
			return err
		}
	}
	for _, w := range m.st.Workloads {
		var err error
		if w.Kind == "Pod" {
			err = m.stopPod(ctx, w.Name)
		} else {
			err = edit(ctx, m.CS, m.ns, w, scaleDown)
		}
		if err != nil {
			return fmt.Errorf("scale down: %w", err)
		}
		fmt.Fprintf(m.Out, "scaled down %s\n", w)
	}
	if err := waitPodsGone(ctx, m.CS, m.ns, m.cfg.SourcePVC, m.cfg.Timeout); err != nil {
		return fmt.Errorf("scale down: %w; run again to keep waiting, or --rollback", err)
	}
	fmt.Fprintf(m.Out, "no Pod mounts %s any more\n", m.cfg.SourcePVC)
	return nil
}

// finalCopy makes the new claim an exact copy of the old one and has the coordinator
// verify it; a difference stops the migration with the workloads still down on the old claim.
func (m *migration) finalCopy(ctx context.Context) error {
	start := time.Now()
	fmt.Fprintf(m.Out, "final copy: --mirror %s to %s, then verify\n", m.cfg.SourcePVC, m.dst.Name)
	outcome, err := m.runCopy(ctx, "final", true, "")
	if err != nil {
		return fmt.Errorf("final copy: %w; the workloads stay scaled down on %s: fix the cause and run again, or --rollback", err, m.cfg.SourcePVC)
	}
	fmt.Fprintf(m.Out, "final copy: done in %s: %s\n", time.Since(start).Round(time.Second/10), outcome)
	if err := m.Copier.Delete(ctx); err != nil {
		return fmt.Errorf("remove the copy's objects: %w", err)
	}
	return nil
}

// switchClaims points the workloads' volumes at the new claim.
func (m *migration) switchClaims(ctx context.Context) error {
	for _, w := range m.st.Workloads {
		if w.Kind == "Pod" {
			continue // created again on the new claim by the scale-up
		}
		if err := edit(ctx, m.CS, m.ns, w, switchClaim(m.cfg.SourcePVC, m.dst.Name)); err != nil {
			return fmt.Errorf("switch to %s: %w", m.dst.Name, err)
		}
		fmt.Fprintf(m.Out, "%s now mounts %s\n", w, m.dst.Name)
	}
	return nil
}

// scaleUp brings the workloads back to their recorded counts, waits until they are ready
// and measures the downtime.
func (m *migration) scaleUp(ctx context.Context) error {
	for _, w := range m.st.Workloads {
		var err error
		if w.Kind == "Pod" {
			err = m.startPod(ctx, w.Name, m.dst.Name)
		} else {
			err = edit(ctx, m.CS, m.ns, w, scaleUp)
		}
		if err != nil {
			return fmt.Errorf("scale up: %w", err)
		}
	}
	if err := waitReady(ctx, m.CS, m.ns, m.st.Workloads, m.cfg.Timeout); err != nil {
		return fmt.Errorf("scale up: %w; run again to keep waiting, or --rollback", err)
	}
	down := time.Since(m.st.DownSince).Round(time.Second / 10)
	m.st.Downtime = down.String()
	fmt.Fprintf(m.Out, "migrated %s to %s: the workloads run on %s; downtime %s (scale-down to ready); %s is kept\n",
		m.cfg.SourcePVC, m.dst.Name, m.dst.Name, down, m.cfg.SourcePVC)
	return nil
}

// Rollback puts the workloads of an unfinished migration back on the old claim with their
// recorded replica counts and stops its copy. The new claim is kept.
func Rollback(ctx context.Context, env Env, cfg Config) (err error) {
	m := &migration{Env: env, cfg: cfg, ns: cfg.Namespace}
	ctx, unlock, err := m.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock(&err)
	if err := m.load(ctx); err != nil {
		return err
	}
	switch {
	case m.dst == nil:
		return fmt.Errorf("claim %s not found in namespace %s: no migration to roll back", cfg.Dest(), m.ns)
	case m.st == nil:
		return fmt.Errorf("claim %s records no migration: nothing to roll back", m.dst.Name)
	case m.st.Phase == RolledBack:
		fmt.Fprintf(m.Out, "the migration of %s to %s was rolled back already\n", cfg.SourcePVC, m.dst.Name)
		return nil
	case m.st.Phase == Done:
		return fmt.Errorf("the migration of %s to %s is done and the workloads may have written to %s since: to go back, migrate again the other way (krsync migrate --source-pvc %s --dest-pvc %s)",
			cfg.SourcePVC, m.dst.Name, m.dst.Name, m.dst.Name, cfg.SourcePVC)
	}
	if err := m.Copier.Delete(ctx); err != nil {
		return fmt.Errorf("rollback: stop the copy: %w", err)
	}
	back := switchClaim(m.dst.Name, cfg.SourcePVC)
	for _, w := range m.st.Workloads {
		var err error
		if w.Kind == "Pod" {
			err = m.startPod(ctx, w.Name, cfg.SourcePVC)
		} else {
			err = edit(ctx, m.CS, m.ns, w, func(o object) bool {
				switched := back(o)
				return scaleUp(o) || switched
			})
		}
		if err != nil {
			return fmt.Errorf("rollback: %w", err)
		}
		fmt.Fprintf(m.Out, "%s is back on %s\n", w, cfg.SourcePVC)
	}
	if err := waitReady(ctx, m.CS, m.ns, m.st.Workloads, cfg.Timeout); err != nil {
		return fmt.Errorf("rollback: %w; run --rollback again to keep waiting", err)
	}
	m.st.Phase, m.st.DownSince, m.st.Downtime, m.st.Pods = RolledBack, time.Time{}, "", nil
	if err := m.save(ctx); err != nil {
		return err
	}
	fmt.Fprintf(m.Out, "rolled back: the workloads run on %s again; %s is kept (delete it with kubectl delete pvc %s -n %s when you no longer need it)\n",
		cfg.SourcePVC, m.dst.Name, m.dst.Name, m.ns)
	return nil
}

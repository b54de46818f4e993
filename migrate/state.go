package migrate

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Annotations krsync migrate writes. Those on the new claim are the migration's state; those
// on a workload are what it needs to bring that workload back (replica count, suspension).
const (
	annoPrefix = "krsync.io/migrate-"
	// On the new claim.
	AnnoSource    = annoPrefix + "source"     // the old claim's name
	AnnoPhase     = annoPrefix + "phase"      // the last step done (Phase)
	AnnoWorkloads = annoPrefix + "workloads"  // JSON list of the workloads moved
	AnnoDownSince = annoPrefix + "down-since" // RFC 3339 time the scale-down began
	AnnoDowntime  = annoPrefix + "downtime"   // the measured downtime, once done
	AnnoPods      = annoPrefix + "pods"       // JSON: the bare Pods deleted, to create again
	// AnnoDestClaimed "true": what the new claim holds is the migration's to replace (it
	// created the claim, a copy into it completed, it was the claim migrated from, or
	// --overwrite-dest); until then every copy requires it empty.
	AnnoDestClaimed = annoPrefix + "dest-claimed"
	// On a workload scaled down: the replica count to restore (Deployment, StatefulSet),
	// the suspend value to restore (CronJob), or that a DaemonSet was paused.
	AnnoReplicas  = annoPrefix + "replicas"
	AnnoSuspended = annoPrefix + "suspend"
	AnnoPaused    = annoPrefix + "paused"
)

// Phase is the last step of a migration that finished; a rerun continues after it.
type Phase string

// The phases in order. RolledBack ends a migration as Done does; a new run after it starts
// again from the plan.
const (
	Planned     Phase = "planned"      // the new claim exists and carries the plan
	WarmCopied  Phase = "warm-copied"  // the copy while the application ran is done
	ScaledDown  Phase = "scaled-down"  // the workloads are at zero and their Pods gone
	FinalCopied Phase = "final-copied" // the last --mirror pass and verify passed
	Switched    Phase = "switched"     // the workloads point at the new claim
	Done        Phase = "done"         // the workloads are back and ready
	RolledBack  Phase = "rolled-back"  // --rollback put the workloads back on the old claim
)

var phaseOrder = []Phase{Planned, WarmCopied, ScaledDown, FinalCopied, Switched, Done}

// after says whether p is at or past q in the order of the steps.
func (p Phase) atLeast(q Phase) bool {
	return phaseIndex(p) >= phaseIndex(q)
}

func phaseIndex(p Phase) int {
	for i, q := range phaseOrder {
		if q == p {
			return i
		}
	}
	return -1
}

// Workload names one object whose Pods mount the old claim.
type Workload struct {
	Kind string `json:"kind"` // Deployment, StatefulSet, DaemonSet or CronJob
	Name string `json:"name"`
}

func (w Workload) String() string { return w.Kind + "/" + w.Name }

// State is a migration as the new claim records it; nil when the claim records none.
type State struct {
	Source    string
	Phase     Phase
	Workloads []Workload
	DownSince time.Time // zero until the scale-down began
	Downtime  string
	// Pods are the records of the Pods without a controller that were deleted, by name.
	Pods map[string]*corev1.Pod
	// DestClaimed: the new claim's contents may be replaced (AnnoDestClaimed).
	DestClaimed bool
}

// stateOf reads the migration state from the new claim's annotations.
func stateOf(pvc *corev1.PersistentVolumeClaim) (*State, error) {
	if pvc == nil {
		return nil, nil
	}
	a := pvc.Annotations
	phase, ok := a[AnnoPhase]
	if !ok {
		return nil, nil
	}
	st := &State{Source: a[AnnoSource], Phase: Phase(phase), Downtime: a[AnnoDowntime], DestClaimed: a[AnnoDestClaimed] == "true"}
	if phaseIndex(st.Phase) < 0 && st.Phase != RolledBack {
		return nil, fmt.Errorf("claim %s: annotation %s=%q is no phase krsync knows", pvc.Name, AnnoPhase, phase)
	}
	if err := json.Unmarshal([]byte(a[AnnoWorkloads]), &st.Workloads); err != nil {
		return nil, fmt.Errorf("claim %s: annotation %s: %w", pvc.Name, AnnoWorkloads, err)
	}
	if s := a[AnnoPods]; s != "" {
		if err := json.Unmarshal([]byte(s), &st.Pods); err != nil {
			return nil, fmt.Errorf("claim %s: annotation %s: %w", pvc.Name, AnnoPods, err)
		}
	}
	if s := a[AnnoDownSince]; s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("claim %s: annotation %s: %w", pvc.Name, AnnoDownSince, err)
		}
		st.DownSince = t
	}
	return st, nil
}

// annotations are the state as annotations of the new claim.
func (st *State) annotations() (map[string]string, error) {
	w, err := json.Marshal(st.Workloads)
	if err != nil {
		return nil, err
	}
	a := map[string]string{AnnoSource: st.Source, AnnoPhase: string(st.Phase), AnnoWorkloads: string(w)}
	if !st.DownSince.IsZero() {
		a[AnnoDownSince] = st.DownSince.UTC().Format(time.RFC3339Nano)
	}
	if st.Downtime != "" {
		a[AnnoDowntime] = st.Downtime
	}
	if st.DestClaimed {
		a[AnnoDestClaimed] = "true"
	}
	if len(st.Pods) > 0 {
		pods, err := json.Marshal(st.Pods)
		if err != nil {
			return nil, err
		}
		a[AnnoPods] = string(pods)
	}
	return a, nil
}

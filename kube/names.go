package kube

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultRunName names the objects of a run when no --name is given: krsync-coordinator,
// krsync-worker, krsync-token.
const DefaultRunName = "krsync"

// InstanceLabel carries the run's name on every object and Pod of the run, and in every
// selector (Service, NetworkPolicy), so that two runs in one namespace never select each
// other's Pods.
const InstanceLabel = "app.kubernetes.io/instance"

// RunNames are the object names of one run.
type RunNames struct {
	// Coordinator names the coordinator's Job, Service, NetworkPolicy, ServiceAccount, Role
	// and RoleBinding.
	Coordinator string
	// Worker names the worker Job and the ConfigMap holding its template: one name, so that
	// kustomize's namePrefix, which renames a ConfigMap in a Role's resourceNames, keeps the
	// Role granting exactly the worker Job.
	Worker string
	// Token names the Secret of the lease API token.
	Token string
}

// NamesFor returns the object names of the run named run.
func NamesFor(run string) RunNames {
	return RunNames{Coordinator: run + "-coordinator", Worker: run + "-worker", Token: run + "-token"}
}

// maxRunName keeps every name a valid Service name (a DNS-1035 label of at most 63 bytes)
// and leaves the Job controller room for its Pod names.
const maxRunName = 63 - len("-coordinator") - len("-xxxxx")

// ValidateRunName checks that a run name gives valid names to every object and label.
func ValidateRunName(run string) error {
	if errs := validation.IsDNS1035Label(run); len(errs) > 0 {
		return fmt.Errorf("--name %q: want a lowercase name starting with a letter (a DNS-1035 label): %s", run, strings.Join(errs, "; "))
	}
	if len(run) > maxRunName {
		return fmt.Errorf("--name %q: at most %d characters, so that %q stays a valid Service name", run, maxRunName, NamesFor(run).Coordinator)
	}
	return nil
}

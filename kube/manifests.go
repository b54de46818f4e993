package kube

import (
	"errors"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Names the manifests, the coordinator and the test kubelet agree on (docs/design.md). The
// object names are those of the default run (NamesFor(DefaultRunName)); `krsync manifests
// --name` and kustomize's namePrefix give a run others.
const (
	CoordinatorName    = DefaultRunName + "-coordinator" // Job, Service, ServiceAccount, Role, RoleBinding
	WorkerJobName      = DefaultRunName + "-worker"      // Job
	TokenSecretName    = DefaultRunName + "-token"
	TokenSecretKey     = "token"
	WorkerTemplateName = WorkerJobName // the ConfigMap of the worker Job's template
	WorkerTemplateKey  = "job.yaml"
	CoordinatorPort    = 8080
	SourceVolume       = "source"
	DestVolume         = "dest"
	// WorkerTemplateVolume is the coordinator Pod's volume of the worker template's
	// ConfigMap; the worker Job takes that ConfigMap's name.
	WorkerTemplateVolume = "worker-template"
	// ComponentLabel tells a run's coordinator from its workers.
	ComponentLabel = "app.kubernetes.io/component"
)

// Manifests are the decoded objects of the rendered manifests, by role.
type Manifests struct {
	ServiceAccount *corev1.ServiceAccount
	Role           *rbacv1.Role
	RoleBinding    *rbacv1.RoleBinding
	Secret         *corev1.Secret
	WorkerTemplate *corev1.ConfigMap
	// WorkerJob is the Job decoded (strictly) from WorkerTemplate's job.yaml.
	WorkerJob     *batchv1.Job
	Service       *corev1.Service
	NetworkPolicy *networkingv1.NetworkPolicy
	Coordinator   *batchv1.Job
	// Objects are all of them, in apply order.
	Objects []runtime.Object
}

// ParseManifests sorts decoded objects by role and decodes the worker template. Roles are
// told by kind and component label, not by name: --name and kustomize rename the objects.
func ParseManifests(objs []runtime.Object) (*Manifests, error) {
	m := &Manifests{Objects: objs}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			m.ServiceAccount = o
		case *rbacv1.Role:
			m.Role = o
		case *rbacv1.RoleBinding:
			m.RoleBinding = o
		case *corev1.Secret:
			m.Secret = o
		case *corev1.ConfigMap:
			if _, ok := o.Data[WorkerTemplateKey]; ok {
				m.WorkerTemplate = o
			}
		case *corev1.Service:
			m.Service = o
		case *networkingv1.NetworkPolicy:
			m.NetworkPolicy = o
		case *batchv1.Job:
			if o.Labels[ComponentLabel] == "coordinator" {
				m.Coordinator = o
			}
		}
	}
	if m.Coordinator == nil || m.WorkerTemplate == nil || m.Role == nil || m.Secret == nil {
		return nil, errors.New("manifests: want at least the coordinator Job, the worker template, the Role and the Secret")
	}
	job, err := DecodeJob([]byte(m.WorkerTemplate.Data[WorkerTemplateKey]))
	if err != nil {
		return nil, fmt.Errorf("manifests: ConfigMap %s key %s: %w", m.WorkerTemplate.Name, WorkerTemplateKey, err)
	}
	m.WorkerJob = job
	return m, nil
}

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

// Names the manifests, the coordinator and the test kubelet agree on (docs/design.md).
const (
	CoordinatorName    = "krsync-coordinator" // Job, Service, ServiceAccount, Role, RoleBinding
	WorkerJobName      = "krsync-worker"      // the default name in the worker template
	TokenSecretName    = "krsync-token"
	TokenSecretKey     = "token"
	WorkerTemplateName = "krsync-worker-template" // ConfigMap
	WorkerTemplateKey  = "job.yaml"
	CoordinatorPort    = 8080
	SourceVolume       = "source"
	DestVolume         = "dest"
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

// ParseManifests sorts decoded objects by role and decodes the worker template.
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
			if o.Name == WorkerTemplateName {
				m.WorkerTemplate = o
			}
		case *corev1.Service:
			m.Service = o
		case *networkingv1.NetworkPolicy:
			m.NetworkPolicy = o
		case *batchv1.Job:
			if o.Name == CoordinatorName {
				m.Coordinator = o
			}
		}
	}
	if m.Coordinator == nil || m.WorkerTemplate == nil || m.Role == nil || m.Secret == nil {
		return nil, errors.New("manifests: want at least the coordinator Job, the worker template, the Role and the Secret")
	}
	job, err := DecodeJob([]byte(m.WorkerTemplate.Data[WorkerTemplateKey]))
	if err != nil {
		return nil, fmt.Errorf("manifests: ConfigMap %s key %s: %w", WorkerTemplateName, WorkerTemplateKey, err)
	}
	m.WorkerJob = job
	return m, nil
}

package kube_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/kube"
)

// applyRBAC server-side applies the ServiceAccount, Role and RoleBinding of the rendered
// manifests, the Role edited by edit, and returns a client acting as that ServiceAccount.
func (e *testEnv) applyRBAC(edit func(*rbacv1.Role)) kubernetes.Interface {
	e.t.Helper()
	m := defaultManifests(e.t)
	if edit != nil {
		edit(m.Role)
	}
	if err := kubeplane.Apply(context.Background(), e.cfg, e.ns, []runtime.Object{m.ServiceAccount, m.Role, m.RoleBinding}); err != nil {
		e.t.Fatal(err)
	}
	cfg := rest.CopyConfig(e.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + e.ns + ":" + kube.CoordinatorName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + e.ns, "system:authenticated"},
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	// RBAC changes reach the authorizer through an informer: wait until the Role is in force.
	e.eventually("the Role is in force", func() bool {
		return e.allowed(cs, authorizationv1.ResourceAttributes{Verb: "create", Group: "batch", Resource: "jobs"}) || edit != nil
	})
	return cs
}

func (e *testEnv) allowed(cs kubernetes.Interface, attrs authorizationv1.ResourceAttributes) bool {
	e.t.Helper()
	if attrs.Namespace == "" {
		attrs.Namespace = e.ns
	}
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(),
		&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}},
		metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.Status.Allowed
}

// TestManifestRBACIsSufficient runs the driver as the manifests' ServiceAccount: it creates
// and scales the Job, watches the Pods, releases a deleted one and records Events.
func TestManifestRBACIsSufficient(t *testing.T) {
	e := newEnv(t, envOptions{})
	sa := e.applyRBAC(nil)
	fc := &fakeCoordinator{}
	fc.setWork(1, 0)
	d, done, result := e.runDriver(sa, e.options(2), fc)
	e.job()
	fc.setWork(2, 0)
	e.eventually("2 worker Pods", func() bool { return len(e.workerPods()) == 2 })
	pod := e.workerPods()[0].Name
	if err := e.cs.CoreV1().Pods(e.ns).Delete(context.Background(), pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(pod+" released", func() bool { return fc.wasReleased(pod) })
	e.eventually("a Scaled Event", func() bool { return e.hasEvent("Scaled") })
	select {
	case <-done:
		t.Fatalf("driver stopped as the ServiceAccount: %v", *result)
	default:
	}
	if err := d.StopWorkers(context.Background()); err != nil {
		t.Fatalf("StopWorkers as the ServiceAccount: %v", err)
	}
}

// TestManifestRBACIsNoWider: the Role grants exactly kube.NeededPermissions, and the
// ServiceAccount can do nothing else that matters.
func TestManifestRBACIsNoWider(t *testing.T) {
	e := newEnv(t, envOptions{})
	sa := e.applyRBAC(nil)

	// Every rule of the Role expands to permissions the driver uses.
	needed := map[string]bool{}
	for _, p := range kube.NeededPermissions(kube.WorkerJobName) {
		needed[p.String()] = true
	}
	role, err := e.cs.RbacV1().Roles(e.ns).Get(context.Background(), kube.CoordinatorName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	granted := map[string]bool{}
	for _, r := range role.Rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						p := kube.Permission{Verb: v, Group: g, Resource: res, Name: n}.String()
						granted[p] = true
						if !needed[p] {
							t.Errorf("the Role grants %s, which the coordinator does not use", p)
						}
					}
				}
			}
		}
	}
	for p := range needed {
		if !granted[p] {
			t.Errorf("the Role lacks %s, which the coordinator uses", p)
		}
	}

	denied := []authorizationv1.ResourceAttributes{
		{Verb: "get", Resource: "secrets", Name: kube.TokenSecretName},
		{Verb: "list", Resource: "secrets"},
		{Verb: "create", Resource: "pods"},
		{Verb: "delete", Resource: "pods"},
		{Verb: "create", Resource: "pods", Subresource: "exec"},
		{Verb: "list", Group: "batch", Resource: "jobs"},
		{Verb: "update", Group: "batch", Resource: "jobs", Name: kube.WorkerJobName},
		{Verb: "patch", Group: "batch", Resource: "jobs", Name: kube.CoordinatorName},
		{Verb: "delete", Group: "batch", Resource: "jobs", Name: "someone-elses-job"},
		{Verb: "create", Group: "batch", Resource: "jobs", Namespace: "kube-system"},
		{Verb: "update", Resource: "persistentvolumeclaims", Name: "dest-pvc"},
		{Verb: "list", Resource: "nodes"},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "roles"},
		{Verb: "update", Resource: "configmaps"},
	}
	for _, attrs := range denied {
		if e.allowed(sa, attrs) {
			t.Errorf("the ServiceAccount may %s %s.%s/%s in %q", attrs.Verb, attrs.Resource, attrs.Group, attrs.Name, attrs.Namespace)
		}
	}
}

// TestMissingVerbFailsWithItsName: a Role without one of the needed verbs makes the
// coordinator fail at once with a "forbidden" error naming that verb and resource.
func TestMissingVerbFailsWithItsName(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, p := range kube.NeededPermissions(kube.WorkerJobName) {
		t.Run(p.String(), func(t *testing.T) {
			sa := e.applyRBAC(func(r *rbacv1.Role) { removeVerb(r, p) })
			e.eventually("the Role without "+p.String()+" is in force", func() bool {
				return !e.allowed(sa, authorizationv1.ResourceAttributes{Verb: p.Verb, Group: p.Group, Resource: p.Resource, Name: p.Name})
			})
			_, err := kube.NewDriver(context.Background(), sa, "default", e.options(2), testLogger(t))
			if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), p.String()) {
				t.Errorf("NewDriver: %v, want a forbidden error naming %q", err, p.String())
			}
		})
	}
}

// removeVerb takes p's verb out of the rules that grant it.
func removeVerb(r *rbacv1.Role, p kube.Permission) {
	for i := range r.Rules {
		rule := &r.Rules[i]
		if slices.Contains(rule.APIGroups, p.Group) && slices.Contains(rule.Resources, p.Resource) &&
			(p.Name == "" || len(rule.ResourceNames) == 0 || slices.Contains(rule.ResourceNames, p.Name)) {
			rule.Verbs = slices.DeleteFunc(rule.Verbs, func(v string) bool { return v == p.Verb })
		}
	}
	r.Rules = slices.DeleteFunc(r.Rules, func(rule rbacv1.PolicyRule) bool { return len(rule.Verbs) == 0 })
}

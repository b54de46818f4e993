package kube

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Permission is one verb on one resource the coordinator needs.
type Permission struct {
	Verb     string
	Group    string
	Resource string
	Name     string // empty: any name
}

func (p Permission) String() string {
	r := p.Resource
	if p.Group != "" {
		r += "." + p.Group
	}
	if p.Name != "" {
		r += "/" + p.Name
	}
	return p.Verb + " " + r
}

// NeededPermissions are the rights the driver uses, for a worker Job named job; manifests/'s
// Role grants exactly these.
func NeededPermissions(job string) []Permission {
	return []Permission{
		{Verb: "create", Group: "batch", Resource: "jobs"},
		{Verb: "get", Group: "batch", Resource: "jobs", Name: job},
		{Verb: "watch", Group: "batch", Resource: "jobs", Name: job},
		{Verb: "patch", Group: "batch", Resource: "jobs", Name: job},
		{Verb: "delete", Group: "batch", Resource: "jobs", Name: job},
		{Verb: "get", Resource: "pods"},
		{Verb: "list", Resource: "pods"},
		{Verb: "watch", Resource: "pods"},
		{Verb: "get", Resource: "persistentvolumeclaims"},
		{Verb: "create", Resource: "events"},
	}
}

// checkAccess asks the API server (SelfSubjectAccessReview, which every authenticated user may
// create) whether the coordinator has each needed permission, so that a Role missing a verb
// fails the coordinator at once with every missing verb named, not later or in a hang.
func (d *Driver) checkAccess(ctx context.Context, job string) error {
	var missing []string
	for _, p := range NeededPermissions(job) {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: d.ns, Verb: p.Verb, Group: p.Group, Resource: p.Resource, Name: p.Name,
			},
		}}
		got, err := d.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			// Cannot ask: the calls themselves will say what is forbidden.
			d.log.Warn().Err(err).Msg("cannot check the coordinator's permissions in advance")
			return nil
		}
		if !got.Status.Allowed {
			missing = append(missing, p.String())
		}
	}
	if len(missing) > 0 {
		role := CoordinatorName // the manifests name the Role after the ServiceAccount
		if d.self != nil && d.self.Spec.ServiceAccountName != "" {
			role = d.self.Spec.ServiceAccountName
		}
		return fmt.Errorf("forbidden: the coordinator may not %s in namespace %s; grant it in the Role %s (manifests/02-role.yaml)",
			strings.Join(missing, ", "), d.ns, role)
	}
	return nil
}

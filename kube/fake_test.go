package kube_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/krsync/krsync/kube"
)

// TestAPIErrorsNameTheCall uses the fake clientset for what a healthy API server does not do
// on demand (an internal error, an unreachable SelfSubjectAccessReview): the driver's error
// names the call and the object.
func TestAPIErrorsNameTheCall(t *testing.T) {
	m := defaultManifests(t)
	tmpl := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(tmpl, []byte(m.WorkerTemplate.Data[kube.WorkerTemplateKey]), 0o644); err != nil {
		t.Fatal(err)
	}
	claim := func(name string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec:       corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}},
		}
	}
	tests := []struct {
		name     string
		verb     string
		resource string
		ssaFails bool
		want     string
	}{
		{name: "job create fails", verb: "create", resource: "jobs", want: "create Job ns/krsync-worker"},
		{name: "claim read fails", verb: "get", resource: "persistentvolumeclaims", want: "get PersistentVolumeClaim ns/source-pvc"},
		{name: "access review unavailable, then job create fails", verb: "create", resource: "jobs", ssaFails: true, want: "create Job ns/krsync-worker"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(claim("source-pvc"), claim("dest-pvc"))
			cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if tc.ssaFails {
					return true, nil, apierrors.NewServiceUnavailable("authorization webhook down")
				}
				r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
				r.Status.Allowed = true
				return true, r, nil
			})
			cs.PrependReactor(tc.verb, tc.resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewInternalError(errors.New("injected failure"))
			})
			opts := kube.Options{CreateWorkers: true, WorkerTemplate: tmpl, Parallelism: 2, PodNamespace: "ns"}
			d, err := kube.NewDriver(context.Background(), cs, "default", opts, testLogger(t))
			if err == nil {
				err = d.Run(context.Background(), &fakeCoordinator{})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "injected") {
				t.Errorf("error %v, want one naming %q and the cause", err, tc.want)
			}
		})
	}
}

// TestVolumeIdentityNamesTheClaimsVolumes: the driver names the data behind the workers'
// claims (the bound PersistentVolume, else the claim's UID), which the coordinator puts in its
// journal's identity: inside a Pod the paths are always /source and /dest (issue 9, item 2).
func TestVolumeIdentityNamesTheClaimsVolumes(t *testing.T) {
	m := defaultManifests(t)
	tmpl := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(tmpl, []byte(m.WorkerTemplate.Data[kube.WorkerTemplateKey]), 0o644); err != nil {
		t.Fatal(err)
	}
	claim := func(name, volume, uid string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(uid)},
			Spec:       corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, VolumeName: volume},
		}
	}
	tests := []struct {
		name         string
		source, dest *corev1.PersistentVolumeClaim
		want         string
	}{
		{"bound", claim("source-pvc", "pv-src", "u1"), claim("dest-pvc", "pv-dst", "u2"), "source=pv/pv-src dest=pv/pv-dst"},
		{"unbound dest", claim("source-pvc", "pv-src", "u1"), claim("dest-pvc", "", "u2"), "source=pv/pv-src dest=claim/ns/dest-pvc@u2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.source, tc.dest)
			cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
				r.Status.Allowed = true
				return true, r, nil
			})
			opts := kube.Options{CreateWorkers: true, WorkerTemplate: tmpl, Parallelism: 2, PodNamespace: "ns"}
			d, err := kube.NewDriver(context.Background(), cs, "default", opts, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := d.VolumeIdentity(); got != tc.want {
				t.Errorf("VolumeIdentity() = %q, want %q", got, tc.want)
			}
		})
	}
}

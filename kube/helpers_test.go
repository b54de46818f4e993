package kube_test

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

func metaNamespace(t *testing.T, o runtime.Object) string {
	t.Helper()
	a, err := meta.Accessor(o)
	if err != nil {
		t.Fatal(err)
	}
	return a.GetNamespace()
}

func envMap(env []corev1.EnvVar) map[string]string {
	m := map[string]string{}
	for _, e := range env {
		m[e.Name] = e.Value
	}
	return m
}

func itoa(i int) string { return strconv.Itoa(i) }

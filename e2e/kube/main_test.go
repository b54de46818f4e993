// Package kubee2e runs krsync end to end on a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler from internal/kubeplane) with
// internal/kubelet playing the kubelet: the rendered manifests are applied as a user would,
// the Jobs run krsync as local processes, and the copy is checked by internal/treecmp.
package kubee2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/krsync/krsync/internal/kubeplane"
)

var cluster kubeplane.Shared

func TestMain(m *testing.M) {
	code := cluster.Main(m)
	if built.path != "" {
		// The built binary is ~80 MB; do not leave one behind per run.
		_ = os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

// Package kubee2e runs krsync end to end on a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler from internal/testing/kubeplane) with
// internal/testing/kubelet playing the kubelet: the rendered manifests are applied as a user would,
// the Jobs' pods run in krsync's image (its root file system, the krsync under test mounted in
// it) with their manifests' user, capabilities and read-only root, and the copy is checked by
// internal/testing/treecmp.
package kubee2e

import (
	"os"
	"testing"

	"github.com/krsync/krsync/internal/testing/kubelet"
	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/internal/testing/testbin"
)

var cluster kubeplane.Shared

func TestMain(m *testing.M) {
	code := cluster.Main(m)
	testbin.RemoveKrsync() // the built binary is ~80 MB; do not leave one behind per run
	kubelet.RemoveBuilt()
	os.Exit(code)
}

// Package kubee2e runs krsync end to end on a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler from internal/kubeplane) with
// internal/kubelet playing the kubelet: the rendered manifests are applied as a user would,
// the Jobs run krsync as local processes, and the copy is checked by internal/treecmp.
package kubee2e

import (
	"os"
	"testing"

	"github.com/krsync/krsync/internal/kubeplane"
)

var cluster kubeplane.Shared

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

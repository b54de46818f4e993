// Package kubeplane starts a real Kubernetes control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler) on loopback for integration tests, through
// ../shared/kube/control-plane.sh, and registers fake Nodes so the scheduler binds Pods.
//
// It is test tooling only: it never runs a kubelet or containers (internal/kubelet plays that
// part), and the product binary does not import it. Tests either skip loudly with
// KRSYNC_SKIP_KUBE=1 or fail when the control plane cannot start; they never skip silently.
package kubeplane

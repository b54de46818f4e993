package kube

import (
	"path"

	corev1 "k8s.io/api/core/v1"

	"github.com/krsync/krsync/rsyncexec"
)

// workerDestDefault is krsync worker's --dest when KRSYNC_DEST does not set it.
const workerDestDefault = "/dest"

// WorkersSeeDest says whether the coordinator, whose destination is dest, may compare the
// destination during its walk (coordinator.Config.CompareDest): its container mounts the
// destination claim at dest, and every container of the worker Job mounts the same claim,
// the same directory of it, at the path its --dest names, with rsync options that
// rsyncexec.QuickCheckSafe accepts. What the Job's spec cannot tell for certain (options from
// envFrom or valueFrom, flags in args, a subPathExpr, no Pod of its own) is a no: the workers
// then check for themselves.
func (d *Driver) WorkersSeeDest(dest string) bool {
	if d.self == nil || d.template == nil {
		return false
	}
	return sameDestination(d.self, &d.template.Spec.Template.Spec, dest)
}

func sameDestination(self *corev1.Pod, workers *corev1.PodSpec, dest string) bool {
	own := ownContainer(self)
	if own == nil {
		return false
	}
	ownMount := mountOf(own, DestVolume)
	claim := templateClaim(&self.Spec, DestVolume)
	if ownMount == nil || claim == "" || ownMount.SubPathExpr != "" || path.Clean(ownMount.MountPath) != path.Clean(dest) {
		return false
	}
	if templateClaim(workers, DestVolume) != claim || len(workers.Containers) == 0 {
		return false
	}
	for i := range workers.Containers {
		c := &workers.Containers[i]
		m := mountOf(c, DestVolume)
		if m == nil || m.SubPath != ownMount.SubPath || m.SubPathExpr != "" || len(c.EnvFrom) > 0 || len(c.Command) > 0 {
			return false
		}
		if len(c.Args) != 1 || c.Args[0] != "worker" {
			return false // flags in args could name another --dest or other --rsync-opts
		}
		workerDest, ok := literalEnv(c, "KRSYNC_DEST", workerDestDefault)
		if !ok || path.Clean(m.MountPath) != path.Clean(workerDest) {
			return false
		}
		opts, ok := literalEnv(c, "KRSYNC_RSYNC_OPTS", "")
		if !ok {
			return false
		}
		args, err := rsyncexec.ParseArgs(opts)
		if err != nil {
			return false
		}
		if args == nil {
			args = rsyncexec.DefaultArgs
		}
		if !rsyncexec.QuickCheckSafe(args) {
			return false
		}
	}
	return true
}

// literalEnv is the value of c's variable name, or def when c has none; false when the value
// comes from elsewhere (valueFrom), which the spec alone cannot tell.
func literalEnv(c *corev1.Container, name, def string) (string, bool) {
	value := def
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom != nil {
			return "", false
		}
		value = e.Value // the last one wins, as in the kubelet
	}
	return value, true
}

package kube

// DefaultWorkerTemplate is where the manifests mount the worker Job template (ConfigMap
// krsync-worker-template, key job.yaml).
const DefaultWorkerTemplate = "/etc/krsync/worker-template/" + WorkerTemplateKey

// Options configure the worker Job driver of a coordinator running in a Pod; `krsync
// coordinator` fills them from its flags (KRSYNC_<FLAG> in the manifests, the Pod's own
// identity through the downward API).
type Options struct {
	// CreateWorkers: create and drive the worker Job from WorkerTemplate.
	CreateWorkers bool
	// Kubeconfig overrides the in-cluster configuration.
	Kubeconfig string
	// WorkerTemplate is the worker Job template's file (YAML).
	WorkerTemplate string
	// Parallelism is the most worker pods at a time.
	Parallelism int
	// PodName, PodNamespace, NodeName are this Pod's (downward API): the owner of the
	// worker Job, its namespace, and the node ReadWriteOnce claims pin the workers to.
	PodName, PodNamespace, NodeName string
	// SourcePVC and DestPVC override the claims of this Pod's volumes "source" and "dest".
	SourcePVC, DestPVC string
	// TerminationLog is the file the outcome is written to at the end.
	TerminationLog string
}

// InPod says whether the options describe a coordinator running in a Pod.
func (o Options) InPod() bool { return o.PodName != "" }

package kube

// Options are the coordinator's Kubernetes flags; `krsync coordinator` embeds them. Every one
// is also an environment variable KRSYNC_<FLAG>; the manifests set them, the Pod's own
// identity through the downward API.
type Options struct {
	CreateWorkers  bool   `help:"Create and drive the worker Job from --worker-template (when running in a Pod)." group:"Kubernetes"`
	Kubeconfig     string `help:"kubeconfig file (default: the in-cluster configuration)." placeholder:"FILE" group:"Kubernetes"`
	WorkerTemplate string `help:"The worker Job template (YAML)." default:"/etc/krsync/worker-template/job.yaml" placeholder:"FILE" group:"Kubernetes"`
	Parallelism    int    `help:"Most worker pods at a time; the Job starts with fewer while there are fewer partitions." default:"2" group:"Kubernetes"`
	PodName        string `help:"This Pod's name (downward API): owner of the worker Job." group:"Kubernetes"`
	PodNamespace   string `help:"This Pod's namespace (downward API)." group:"Kubernetes"`
	NodeName       string `help:"This Pod's node (downward API): ReadWriteOnce claims pin the workers there." group:"Kubernetes"`
	SourcePVC      string `help:"Source claim for the workers (default: the claim of this Pod's volume \"source\")." group:"Kubernetes"`
	DestPVC        string `help:"Destination claim for the workers (default: the claim of this Pod's volume \"dest\")." group:"Kubernetes"`
	TerminationLog string `help:"File the outcome is written to at the end (the container's terminationMessagePath)." placeholder:"FILE" group:"Kubernetes"`
}

// InPod says whether the options describe a coordinator running in a Pod.
func (o Options) InPod() bool { return o.PodName != "" }

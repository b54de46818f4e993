// Package kubelet is a process kubelet for tests: it registers a Node on a real (test) control
// plane, keeps it fresh, watches the Pods bound to it and runs each container's command as a
// local process of the krsync binary, mapping volumes, ports, Service names, Secrets and a
// ServiceAccount token onto the host, then reports the real exit code in the Pod's status.
//
// It is not a container runtime and never ships in the product: there are no images, no
// namespaces or cgroups, no read-only binds (tests compare a readOnly source after the run), no
// pod network (every Pod is 127.0.0.1 and container ports become free loopback ports), no
// probes, and only the parts of the Pod API that krsync's manifests use are honoured.
package kubelet

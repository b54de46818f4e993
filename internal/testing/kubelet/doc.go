// Package kubelet is a process kubelet for tests: it registers a Node on a real (test) control
// plane, keeps it fresh, watches the Pods bound to it and runs each container, mapping ports,
// Service names, Secrets and a ServiceAccount token onto the host, then reports the real exit
// code in the Pod's status.
//
// With Config.Image (the e2e suite's mode) a container runs as a container runtime would run
// it: in the image's root file system (a copy-on-write overlay, never changed), in a mount
// namespace of its own with its volumes bind-mounted at their mountPaths (readOnly ones, and
// configMap, secret and projected volumes, read-only), with its securityContext's user,
// groups, capabilities (containerd's defaults, drop and add), no_new_privs and read-only root;
// the krsync under test is mounted over the image's. See package sandbox for how, and what it
// leaves out (PID and network namespaces, cgroups, seccomp). Without it a container is a host
// process of the krsync binary, as root, with mount paths rewritten to host directories in its
// env and args.
//
// It is not a container runtime and never ships in the product: there is no image pull (one
// image for every Pod), no pod network (every Pod is 127.0.0.1 and container ports become free
// loopback ports, so addresses are still rewritten), no probes, fsGroup does not change volume
// owners, and only the parts of the Pod API that krsync's manifests use are honoured.
package kubelet

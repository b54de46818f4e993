package kube

import (
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// inClusterNamespaceFile is where every Pod with a service account token finds its namespace.
const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// RESTConfig loads the client configuration: the kubeconfig file when given, else the
// in-cluster configuration, else the usual kubeconfig loading rules ($KUBECONFIG, ~/.kube/config).
// It also returns the namespace the configuration points at.
func RESTConfig(kubeconfig string) (*rest.Config, string, error) {
	if kubeconfig == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			ns := "default"
			if b, err := os.ReadFile(inClusterNamespaceFile); err == nil && strings.TrimSpace(string(b)) != "" {
				ns = strings.TrimSpace(string(b))
			}
			return cfg, ns, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if kubeconfig == "" {
			return nil, "", fmt.Errorf("no Kubernetes configuration: not in a cluster, and %w (set --kubeconfig)", err)
		}
		return nil, "", fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	return cfg, ns, nil
}

// Clientset builds a clientset from RESTConfig(kubeconfig).
func Clientset(kubeconfig string) (kubernetes.Interface, *rest.Config, string, error) {
	cfg, ns, err := RESTConfig(kubeconfig)
	if err != nil {
		return nil, nil, "", err
	}
	cfg.UserAgent = "krsync"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, cfg, ns, nil
}

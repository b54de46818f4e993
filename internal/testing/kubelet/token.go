package kubelet

import (
	"context"
	"fmt"
	"os"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"k8s.io/client-go/tools/clientcmd"
)

// EnvKubeconfig is how a container that would have in-cluster credentials gets them instead:
// krsync's --kubeconfig flag through its KRSYNC_<FLAG> variable.
const EnvKubeconfig = "KRSYNC_KUBECONFIG"

// writeKubeconfig writes a kubeconfig at path that reaches the test API server as the Pod's
// ServiceAccount, with a token from the TokenRequest API: the process has exactly the rights
// RBAC grants that ServiceAccount, not the kubelet's. It holds the CA itself, as a container
// cannot read the host's files, and is readable by any user, like the token of a
// kube-api-access volume.
func (r *podRunner) writeKubeconfig(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	token, err := r.requestToken(ctx, "", nil)
	if err != nil {
		return err
	}
	rc := r.k.cfg.RESTConfig
	ca := rc.TLSClientConfig.CAData
	if len(ca) == 0 && rc.TLSClientConfig.CAFile != "" {
		if ca, err = os.ReadFile(rc.TLSClientConfig.CAFile); err != nil {
			return fmt.Errorf("kubeconfig: CA: %w", err)
		}
	}
	cluster := &clientcmdapi.Cluster{
		Server:                   rc.Host,
		CertificateAuthorityData: ca,
		InsecureSkipTLSVerify:    rc.TLSClientConfig.Insecure,
		TLSServerName:            rc.TLSClientConfig.ServerName,
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = cluster
	cfg.AuthInfos["pod"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["pod"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "pod", Namespace: r.pod.Namespace}
	cfg.CurrentContext = "pod"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return os.Chmod(path, 0o644)
}

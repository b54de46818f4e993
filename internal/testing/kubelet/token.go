package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"k8s.io/client-go/tools/clientcmd"
)

// EnvKubeconfig is how a container that would have in-cluster credentials gets them instead:
// krsync's --kubeconfig flag through its KRSYNC_<FLAG> variable.
const EnvKubeconfig = "KRSYNC_KUBECONFIG"

// writeKubeconfig writes a kubeconfig that reaches the test API server as the Pod's
// ServiceAccount, with a token from the TokenRequest API: the process has exactly the rights
// RBAC grants that ServiceAccount, not the kubelet's.
func (r *podRunner) writeKubeconfig(ctx context.Context) (string, error) {
	path := filepath.Join(r.dir, "kubeconfig")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	token, err := r.requestToken(ctx, "", nil)
	if err != nil {
		return "", err
	}
	rc := r.k.cfg.RESTConfig
	cluster := &clientcmdapi.Cluster{
		Server:                   rc.Host,
		CertificateAuthority:     rc.TLSClientConfig.CAFile,
		CertificateAuthorityData: rc.TLSClientConfig.CAData,
		InsecureSkipTLSVerify:    rc.TLSClientConfig.Insecure,
		TLSServerName:            rc.TLSClientConfig.ServerName,
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = cluster
	cfg.AuthInfos["pod"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["pod"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "pod", Namespace: r.pod.Namespace}
	cfg.CurrentContext = "pod"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, nil
}

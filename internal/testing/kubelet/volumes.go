package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// volume is a Pod volume made real on the host.
type volume struct {
	host string
	// serviceAccountToken says the volume holds a projected ServiceAccount token: a container
	// mounting it would have in-cluster credentials, so it gets a kubeconfig instead.
	serviceAccountToken bool
	// readOnly: a runtime mounts it read-only whatever the volumeMount says (configMap,
	// secret, downwardAPI and projected volumes, and a claim the Pod asks for read-only).
	readOnly bool
}

// prepareVolumes turns every Pod volume into a host directory.
func (r *podRunner) prepareVolumes(ctx context.Context) (map[string]volume, error) {
	vols := map[string]volume{}
	for _, v := range r.pod.Spec.Volumes {
		vol, err := r.prepareVolume(ctx, v)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		vols[v.Name] = vol
	}
	return vols, nil
}

func (r *podRunner) prepareVolume(ctx context.Context, v corev1.Volume) (volume, error) {
	dir := filepath.Join(r.dir, "volumes", v.Name)
	switch {
	case v.PersistentVolumeClaim != nil:
		path, err := r.claimPath(ctx, v.PersistentVolumeClaim.ClaimName)
		return volume{host: path, readOnly: v.PersistentVolumeClaim.ReadOnly}, err
	case v.HostPath != nil:
		if t := v.HostPath.Type; t != nil && (*t == corev1.HostPathDirectoryOrCreate) {
			if err := os.MkdirAll(v.HostPath.Path, 0o755); err != nil {
				return volume{}, err
			}
		}
		return volume{host: v.HostPath.Path}, nil
	case v.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return volume{}, err
		}
		return volume{host: dir}, os.Chmod(dir, 0o777) // a kubelet's emptyDir, whatever the umask
	case v.ConfigMap != nil:
		vol := volume{host: dir, readOnly: true}
		cm, err := r.configMap(ctx, v.ConfigMap.Name)
		if err != nil {
			if optional(v.ConfigMap.Optional) {
				return vol, os.MkdirAll(dir, 0o755)
			}
			return volume{}, err
		}
		return vol, writeKeys(dir, stringData(cm.Data, cm.BinaryData), v.ConfigMap.Items, v.ConfigMap.DefaultMode)
	case v.Secret != nil:
		vol := volume{host: dir, readOnly: true}
		s, err := r.secret(ctx, v.Secret.SecretName)
		if err != nil {
			if optional(v.Secret.Optional) {
				return vol, os.MkdirAll(dir, 0o755)
			}
			return volume{}, err
		}
		return vol, writeKeys(dir, s.Data, v.Secret.Items, v.Secret.DefaultMode)
	case v.DownwardAPI != nil:
		return volume{host: dir, readOnly: true}, r.writeDownwardAPI(dir, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
	case v.Projected != nil:
		return r.prepareProjected(ctx, dir, v.Projected)
	}
	return volume{}, fmt.Errorf("this volume type is not supported by the test kubelet (PVC, hostPath, emptyDir, configMap, secret, downwardAPI and projected are)")
}

// claimPath follows a PVC to its bound PV and returns the PV's hostPath or local path.
func (r *podRunner) claimPath(ctx context.Context, claim string) (string, error) {
	ns := r.pod.Namespace
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pvc, err := r.k.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("claim %s/%s: %w", ns, claim, err)
		}
		if pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName != "" {
			pv, err := r.k.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				return "", fmt.Errorf("claim %s/%s: volume %s: %w", ns, claim, pvc.Spec.VolumeName, err)
			}
			switch {
			case pv.Spec.HostPath != nil:
				return pv.Spec.HostPath.Path, nil
			case pv.Spec.Local != nil:
				return pv.Spec.Local.Path, nil
			}
			return "", fmt.Errorf("claim %s/%s: volume %s is neither hostPath nor local, which is all the test kubelet mounts", ns, claim, pv.Name)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("claim %s/%s: not bound after 2m (phase %q)", ns, claim, pvc.Status.Phase)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-r.termCh:
			return "", fmt.Errorf("claim %s/%s: pod deleted while waiting for the claim to bind", ns, claim)
		case <-time.After(200 * time.Millisecond): // polling the PV controller's binding
		}
	}
}

func (r *podRunner) prepareProjected(ctx context.Context, dir string, p *corev1.ProjectedVolumeSource) (volume, error) {
	vol := volume{host: dir, readOnly: true}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return vol, err
	}
	tokenMode := os.FileMode(0o644) // Kubernetes' default mode of projected files
	if p.DefaultMode != nil {
		tokenMode = os.FileMode(*p.DefaultMode)
	}
	for _, src := range p.Sources {
		var err error
		switch {
		case src.ConfigMap != nil:
			var cm *corev1.ConfigMap
			if cm, err = r.configMap(ctx, src.ConfigMap.Name); err == nil {
				err = writeKeys(dir, stringData(cm.Data, cm.BinaryData), src.ConfigMap.Items, p.DefaultMode)
			} else if optional(src.ConfigMap.Optional) {
				err = nil
			}
		case src.Secret != nil:
			var s *corev1.Secret
			if s, err = r.secret(ctx, src.Secret.Name); err == nil {
				err = writeKeys(dir, s.Data, src.Secret.Items, p.DefaultMode)
			} else if optional(src.Secret.Optional) {
				err = nil
			}
		case src.DownwardAPI != nil:
			err = r.writeDownwardAPI(dir, src.DownwardAPI.Items, p.DefaultMode)
		case src.ServiceAccountToken != nil:
			var tok string
			tok, err = r.requestToken(ctx, src.ServiceAccountToken.Audience, src.ServiceAccountToken.ExpirationSeconds)
			if err == nil {
				err = writeFile(dir, src.ServiceAccountToken.Path, []byte(tok), tokenMode)
				vol.serviceAccountToken = true
			}
		case src.ClusterTrustBundle != nil, src.PodCertificate != nil:
			err = fmt.Errorf("projected source not supported by the test kubelet")
		}
		if err != nil {
			return vol, err
		}
	}
	return vol, nil
}

func stringData(data map[string]string, binary map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range data {
		out[k] = []byte(v)
	}
	for k, v := range binary {
		out[k] = v
	}
	return out
}

// writeKeys writes a ConfigMap's or Secret's keys as files, all of them or the listed items.
func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32) error {
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode)
	}
	if len(items) == 0 {
		for key := range data {
			items = append(items, corev1.KeyToPath{Key: key, Path: key})
		}
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("key %q not found", it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		if err := writeFile(dir, it.Path, v, m); err != nil {
			return err
		}
	}
	return nil
}

func (r *podRunner) writeDownwardAPI(dir string, items []corev1.DownwardAPIVolumeFile, defaultMode *int32) error {
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode)
	}
	for _, it := range items {
		if it.FieldRef == nil {
			return fmt.Errorf("downwardAPI %s: only fieldRef is supported by the test kubelet", it.Path)
		}
		v, err := fieldValue(r.pod, it.FieldRef.FieldPath)
		if err != nil {
			return err
		}
		if err := writeFile(dir, it.Path, []byte(v), mode); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir, rel string, data []byte, mode os.FileMode) error {
	if filepath.IsAbs(rel) || strings.HasPrefix(filepath.Clean(rel), "..") {
		return fmt.Errorf("path %q leaves the volume", rel)
	}
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, mode)
}

// requestToken asks the TokenRequest API for a token of the Pod's ServiceAccount, bound to the
// Pod, so it stops working when the Pod is deleted.
func (r *podRunner) requestToken(ctx context.Context, audience string, expiration *int64) (string, error) {
	sa := r.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To[int64](3600),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: r.pod.Name, UID: r.pod.UID},
	}}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	if expiration != nil {
		req.Spec.ExpirationSeconds = expiration
	}
	got, err := r.k.cs.CoreV1().ServiceAccounts(r.pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for serviceaccount %s/%s: %w", r.pod.Namespace, sa, err)
	}
	return got.Status.Token, nil
}

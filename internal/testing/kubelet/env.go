package kubelet

import (
	"context"
	"fmt"
	"math"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// envVar is one resolved variable; order matters for $(VAR) references.
type envVar struct{ name, value string }

// containerEnv resolves a container's envFrom and env, in Kubernetes order: envFrom first,
// then env, each value expanding $(VAR) references to the variables defined before it.
func (r *podRunner) containerEnv(ctx context.Context, c *corev1.Container) ([]envVar, error) {
	var vars []envVar
	index := map[string]int{}
	set := func(name, value string) {
		if i, ok := index[name]; ok {
			vars[i].value = value
			return
		}
		index[name] = len(vars)
		vars = append(vars, envVar{name, value})
	}
	lookup := func(name string) (string, bool) {
		if i, ok := index[name]; ok {
			return vars[i].value, true
		}
		return "", false
	}
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := r.configMap(ctx, from.ConfigMapRef.Name)
			if err != nil {
				if optional(from.ConfigMapRef.Optional) && apierrors.IsNotFound(err) {
					continue
				}
				return nil, fmt.Errorf("envFrom: %w", err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := r.secret(ctx, from.SecretRef.Name)
			if err != nil {
				if optional(from.SecretRef.Optional) && apierrors.IsNotFound(err) {
					continue
				}
				return nil, fmt.Errorf("envFrom: %w", err)
			}
			data = map[string]string{}
			for key, v := range s.Data {
				data[key] = string(v)
			}
		}
		for key, v := range data {
			set(from.Prefix+key, v)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, lookup))
			continue
		}
		v, ok, err := r.envSource(ctx, c, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	return vars, nil
}

// envSource resolves valueFrom; ok is false for a missing optional key.
func (r *podRunner) envSource(ctx context.Context, c *corev1.Container, src *corev1.EnvVarSource) (string, bool, error) {
	switch {
	case src.FieldRef != nil:
		v, err := fieldValue(r.pod, src.FieldRef.FieldPath)
		return v, err == nil, err
	case src.ResourceFieldRef != nil:
		v, err := r.resourceValue(c, src.ResourceFieldRef)
		return v, err == nil, err
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := r.secret(ctx, ref.Name)
		if err != nil {
			if optional(ref.Optional) && apierrors.IsNotFound(err) {
				return "", false, nil
			}
			return "", false, err
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("secret %s has no key %q", ref.Name, ref.Key)
		}
		return string(v), true, nil
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := r.configMap(ctx, ref.Name)
		if err != nil {
			if optional(ref.Optional) && apierrors.IsNotFound(err) {
				return "", false, nil
			}
			return "", false, err
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if optional(ref.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("configmap %s has no key %q", ref.Name, ref.Key)
		}
		return v, true, nil
	}
	return "", false, fmt.Errorf("unsupported valueFrom")
}

func optional(b *bool) bool { return b != nil && *b }

// fieldValue resolves a downward-API field path. Every Pod and every Node is 127.0.0.1 here.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs":
		return "127.0.0.1", nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if key, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(key, "']") {
			return m[strings.TrimSuffix(key, "']")], nil
		}
	}
	return "", fmt.Errorf("downward API field %q is not supported by the test kubelet", path)
}

// resourceValue resolves a resourceFieldRef like limits.cpu, falling back to the Node's
// allocatable when no limit is set, as a kubelet does.
func (r *podRunner) resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("resource %q: want limits.<name> or requests.<name>", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		q, ok = r.k.capacity()[corev1.ResourceName(name)]
		if kind == "requests" {
			q, ok = resource.MustParse("0"), true
		}
	}
	if !ok {
		return "", fmt.Errorf("resource %q is not known", ref.Resource)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	return fmt.Sprint(int64(math.Ceil(q.AsApproximateFloat64() / divisor.AsApproximateFloat64()))), nil
}

// secret and configMap read through a per-Pod cache, as the Pod's objects do not change while
// it starts.
func (r *podRunner) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	r.mu.Lock()
	s, ok := r.secrets[name]
	r.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := r.k.cs.CoreV1().Secrets(r.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", r.pod.Namespace, name, err)
	}
	r.mu.Lock()
	r.secrets[name] = s
	r.mu.Unlock()
	return s, nil
}

func (r *podRunner) configMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	r.mu.Lock()
	cm, ok := r.configMaps[name]
	r.mu.Unlock()
	if ok {
		return cm, nil
	}
	cm, err := r.k.cs.CoreV1().ConfigMaps(r.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w", r.pod.Namespace, name, err)
	}
	r.mu.Lock()
	r.configMaps[name] = cm
	r.mu.Unlock()
	return cm, nil
}

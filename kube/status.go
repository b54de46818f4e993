package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krsync/krsync/leaseapi"
)

// ReadToken reads the lease API token from the token Secret of run (NamesFor(run).Token) in ns.
func ReadToken(ctx context.Context, cs kubernetes.Interface, ns, run string) (string, error) {
	secret := NamesFor(run).Token
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read the lease API token from Secret %s/%s: %w (or give --token-file)", ns, secret, err)
	}
	t := strings.TrimSpace(string(s.Data[TokenSecretKey]))
	if t == "" {
		return "", fmt.Errorf("Secret %s/%s has no key %q", ns, secret, TokenSecretKey)
	}
	return t, nil
}

// ProxyStatus asks the coordinator behind Service service:port in ns for its status, through
// the API server's service proxy (no port-forward, no route from the caller to the pods).
func ProxyStatus(ctx context.Context, cs kubernetes.Interface, ns, service string, port int, token string) (leaseapi.Status, error) {
	var st leaseapi.Status
	req := cs.CoreV1().RESTClient().Get().
		Namespace(ns).Resource("services").
		Name("http:"+service+":"+strconv.Itoa(port)).
		SubResource("proxy").Suffix(leaseapi.PathStatus).
		SetHeader(leaseapi.TokenHeader, token)
	body, err := req.DoRaw(ctx)
	if err != nil {
		var e leaseapi.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return st, fmt.Errorf("coordinator %s/%s: %s", ns, service, e.Error)
		}
		if apierrors.IsServiceUnavailable(err) || apierrors.IsNotFound(err) {
			return st, fmt.Errorf("no coordinator answers in namespace %s (Service %s: %v); is a krsync run going on there?", ns, service, err)
		}
		return st, fmt.Errorf("coordinator %s/%s through the API server's service proxy: %w", ns, service, err)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("coordinator %s/%s: decode status: %w", ns, service, err)
	}
	return st, nil
}

package kube_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// hostIP is an address of this machine the API server may proxy to (it refuses loopback).
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	t.Fatal("no non-loopback IPv4 address: the API server's service proxy cannot reach a local server")
	return ""
}

// serveBehindService listens on this machine and makes Service krsync-coordinator in the
// test namespace point at it (a Service without selector and its Endpoints).
func (e *testEnv) serveBehindService(h http.Handler) {
	e.t.Helper()
	ip := hostIP(e.t)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	e.t.Cleanup(func() { _ = srv.Close() })
	e.pointServiceAt(ip, ln.Addr().(*net.TCPAddr).Port)
}

func (e *testEnv) pointServiceAt(ip string, port int) {
	e.t.Helper()
	ctx := context.Background()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: kube.CoordinatorName},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: kube.CoordinatorPort, TargetPort: intstr.FromInt32(int32(port)), Protocol: corev1.ProtocolTCP,
		}}},
	}
	if _, err := e.cs.CoreV1().Services(e.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	// The service proxy only forwards to endpoints that are Pods with that IP (it checks the
	// EndpointSlice's targetRef against the Pod's status), as the EndpointSlice controller
	// would make them for the coordinator's Pod: play both parts.
	err := e.updatePodStatus(e.self.Name, func(s *corev1.PodStatus) {
		s.Phase, s.PodIP, s.PodIPs = corev1.PodRunning, ip, []corev1.PodIP{{IP: ip}}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	self := e.self
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: kube.CoordinatorName + "-test", Labels: map[string]string{discoveryv1.LabelServiceName: kube.CoordinatorName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: e.ns, Name: self.Name, UID: self.UID},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(port)), Protocol: ptrTo(corev1.ProtocolTCP)}},
	}
	if _, err := e.cs.DiscoveryV1().EndpointSlices(e.ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestServiceProxyForwardsTokenHeaderNotAuthorization records what reaches the coordinator
// through the API server's service proxy: not the caller's Authorization (the API server
// consumes it, which is why the token travels as X-Krsync-Token), but X-Krsync-Token.
func TestServiceProxyForwardsTokenHeaderNotAuthorization(t *testing.T) {
	e := newEnv(t, envOptions{})
	var mu sync.Mutex
	var seen http.Header
	e.serveBehindService(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"partitions":{"done":1,"total":1},"finished":true}`))
	}))
	var st leaseapi.Status
	var err error
	// The API server learns of the EndpointSlice through an informer: poll until it has.
	e.eventually("the service proxy answers", func() bool {
		st, err = kube.ProxyStatus(context.Background(), e.cs, e.ns, kube.CoordinatorName, kube.CoordinatorPort, "sekrit")
		return err == nil
	})
	if !st.Finished || st.Partitions.Done != 1 {
		t.Errorf("status %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := seen.Get(leaseapi.TokenHeader); got != "sekrit" {
		t.Errorf("%s reached the coordinator as %q", leaseapi.TokenHeader, got)
	}
	if got := seen.Get("Authorization"); got != "" {
		t.Errorf("the caller's Authorization reached the coordinator: %q", got)
	}
}

// TestStatusThroughServiceProxy asks a real coordinator for its status through the API
// server, with the token from the Secret, and a wrong token is refused.
func TestStatusThroughServiceProxy(t *testing.T) {
	e := newEnv(t, envOptions{})
	src := t.TempDir()
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(src, "f"+strconv.Itoa(i)), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := fpart.ParseOptionString("-zz -x .zfs -x .snapshot* -x .ckpt")
	if err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(coordinator.Config{
		Source: src, Partitioner: coordinator.LiveDefaults(opts, 2, 1), Token: "right-token",
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ip := hostIP(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.Run(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	e.pointServiceAt(ip, ln.Addr().(*net.TCPAddr).Port)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: kube.TokenSecretName},
		StringData: map[string]string{kube.TokenSecretKey: "right-token"},
	}
	if _, err := e.cs.CoreV1().Secrets(e.ns).Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Another run's Secret in the same namespace (krsync manifests --name nightly).
	other := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: kube.NamesFor("nightly").Token},
		StringData: map[string]string{kube.TokenSecretKey: "nightly-token"},
	}
	if _, err := e.cs.CoreV1().Secrets(e.ns).Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := kube.ReadToken(context.Background(), e.cs, e.ns, "nightly"); err != nil || got != "nightly-token" {
		t.Errorf("ReadToken of run nightly = %q, %v; want its own Secret's token", got, err)
	}
	token, err := kube.ReadToken(context.Background(), e.cs, e.ns, kube.DefaultRunName)
	if err != nil {
		t.Fatal(err)
	}
	var st leaseapi.Status
	e.eventually("the walk is done", func() bool {
		st, err = kube.ProxyStatus(context.Background(), e.cs, e.ns, kube.CoordinatorName, kube.CoordinatorPort, token)
		return err == nil && st.WalkDone
	})
	if want := c.Status(); st.EntriesWalked != want.EntriesWalked || st.Partitions.Total != want.Partitions.Total || st.EntriesWalked < 5 {
		t.Errorf("status through the proxy %+v, coordinator says %+v", st, want)
	}
	_, err = kube.ProxyStatus(context.Background(), e.cs, e.ns, kube.CoordinatorName, kube.CoordinatorPort, "wrong-token")
	if err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("wrong token: %v, want unauthorized", err)
	}
}

package kubelet

import (
	"fmt"
	"net"
	"sync"
)

// Ports hands out loopback ports. Every Pod is 127.0.0.1 here, so each container port gets a
// free host port; a port reached through a Service is allocated once per (namespace, Service,
// port), lazily, by whichever Pod needs it first, so a worker started before its coordinator
// is pointed at the port the coordinator will listen on. Kubelets of one cluster share one Ports.
type Ports struct {
	mu       sync.Mutex
	services map[serviceKey]int
	taken    map[int]bool
}

type serviceKey struct {
	namespace, service string
	port               int32
}

// NewPorts returns an empty registry.
func NewPorts() *Ports {
	return &Ports{services: map[serviceKey]int{}, taken: map[int]bool{}}
}

// Service returns the host port behind port of Service namespace/name, allocating it on first use.
func (p *Ports) Service(namespace, name string, port int32) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := serviceKey{namespace, name, port}
	if hp, ok := p.services[key]; ok {
		return hp, nil
	}
	hp, err := p.freeLocked()
	if err != nil {
		return 0, fmt.Errorf("service %s/%s port %d: %w", namespace, name, port, err)
	}
	p.services[key] = hp
	return hp, nil
}

// Free returns a loopback port nobody has been given yet.
func (p *Ports) Free() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.freeLocked()
}

func (p *Ports) freeLocked() (int, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free loopback port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if !p.taken[port] {
			p.taken[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("find a free loopback port: every port the kernel offered was taken already")
}

// Package freeport picks free TCP ports on 127.0.0.1 for servers that must
// be told their port before they start (etcd members, redis-server).
package freeport

import (
	"fmt"
	"net"
)

// Ports returns n distinct loopback ports that were free a moment ago. All
// n are held open together so the kernel cannot hand out the same port
// twice; another process can still take one before the caller binds it, so
// callers retry on a bind conflict.
func Ports(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

package kube

import "time"

// SetTiming shortens the publisher's fixed timings so tests about outages
// finish quickly.
func SetTiming(p *Publisher, request, shutdown, maxBackoff time.Duration) {
	p.requestTimeout = request
	p.shutdownTimeout = shutdown
	p.maxBackoff = maxBackoff
}

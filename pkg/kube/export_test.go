package kube

import "time"

// SetTiming shortens the publisher's fixed timings so tests about outages
// finish quickly.
func SetTiming(p *Publisher, request, shutdown, maxBackoff time.Duration) {
	p.requestTimeout = request
	p.shutdownTimeout = shutdown
	p.maxBackoff = maxBackoff
}

// SetFencedHooks runs before just before each fenced write a leader makes
// to its own pod ("label", "gate") or to a peer ("demote"), after it has
// confirmed it still leads,
// and after with that request's result, so a test can freeze the publisher
// where a SIGSTOP would hurt most.
func SetFencedHooks(p *Publisher, before func(what string), after func(what string, err error)) {
	p.beforeFenced, p.afterFenced = before, after
}

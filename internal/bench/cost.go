package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// CostResult is the steady-state cost of one system with a few idle
// candidates: one leader, the rest waiting.
type CostResult struct {
	System     string
	Candidates int
	Window     time.Duration
	// RequestsPerSec is backend requests per second per candidate.
	RequestsPerSec float64
	// Process figures, only for the sidecar (zero for in-process libraries).
	LeaderRSS, FollowerRSS   int64
	LeaderAnon, FollowerAnon int64         // anonymous part of RSS
	LeaderCPU, FollowerCPU   time.Duration // CPU time per second
}

// etcdReceived returns the number of gRPC messages etcd has received (a
// unary call is one message; every message on a stream counts), from its
// own /metrics.
func etcdReceived(ctx context.Context, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	var total float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "grpc_server_msg_received_total{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("etcd metrics: %q: %w", line, err)
		}
		total += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("etcd metrics: %w", err)
	}
	if !found {
		return 0, fmt.Errorf("etcd metrics: no grpc_server_msg_received_total")
	}
	return total, nil
}

// counter reads a monotonically increasing request count.
type counter func(ctx context.Context) (float64, error)

func etcdCounter(url string) counter {
	return func(ctx context.Context) (float64, error) { return etcdReceived(ctx, url) }
}

func redisCounter(c *redis.Client) counter {
	return func(ctx context.Context) (float64, error) {
		n, err := commandCalls(ctx, c)
		return float64(n), err
	}
}

func atomicCounter(n *atomic.Int64) counter {
	return func(context.Context) (float64, error) { return float64(n.Load()), nil }
}

// measureCost starts n candidates of a fresh election, waits until one leads
// and the others are in line, and counts requests and (for processes)
// the resources of candidates that are processes over window.
func measureCost(ctx context.Context, system string, spec trialSpec, queued func(n int64) queuedCheck, count counter,
	election string, n int, window time.Duration) (res CostResult, err error) {
	res = CostResult{System: system, Candidates: n, Window: window}
	var cs []*contender
	defer func() {
		for _, c := range cs {
			_ = c.stop(false)
		}
		for _, c := range cs {
			if werr := waitChan(context.WithoutCancel(ctx), c.done, time.Minute, c.id+" stops"); werr != nil && err == nil {
				err = werr
			}
		}
	}()
	for i := range n {
		c, err := spec.start(ctx, election, fmt.Sprintf("%s-c%d", election, i))
		if err != nil {
			return res, err
		}
		cs = append(cs, c)
		if i == 0 {
			if err := waitChan(ctx, c.led, time.Minute, c.id+" leads"); err != nil {
				return res, err
			}
			continue
		}
		if err := waitChan(ctx, c.waiting, time.Minute, c.id+" waits"); err != nil {
			return res, err
		}
	}
	if queued != nil {
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := queued(int64(n))(qctx, election); err != nil {
			return res, err
		}
	}
	before, err := count(ctx)
	if err != nil {
		return res, err
	}
	usage := func() ([]procUsage, error) {
		var us []procUsage
		for _, c := range cs {
			if c.pid == 0 {
				return nil, nil
			}
			u, err := readUsage(c.pid)
			if err != nil {
				return nil, err
			}
			us = append(us, u)
		}
		return us, nil
	}
	u0, err := usage()
	if err != nil {
		return res, err
	}
	start := time.Now()
	// Measuring over a window is the point here, not synchronisation.
	timer := time.NewTimer(window)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
		return res, ctx.Err()
	}
	u1, err := usage()
	if err != nil {
		return res, err
	}
	after, err := count(ctx)
	if err != nil {
		return res, err
	}
	elapsed := time.Since(start)
	res.Window = elapsed
	res.RequestsPerSec = (after - before) / elapsed.Seconds() / float64(n)
	if len(u1) == n {
		res.LeaderRSS, res.LeaderAnon, res.LeaderCPU = u1[0].RSS, u1[0].Anon, cpuPerSecond(u0[0], u1[0])
		for i := 1; i < n; i++ {
			res.FollowerRSS += u1[i].RSS
			res.FollowerAnon += u1[i].Anon
			res.FollowerCPU += cpuPerSecond(u0[i], u1[i])
		}
		res.FollowerRSS /= int64(n - 1)
		res.FollowerAnon /= int64(n - 1)
		res.FollowerCPU /= time.Duration(n - 1)
	}
	for _, c := range cs {
		select {
		case <-c.done:
			return res, fmt.Errorf("%s stopped during the measurement", c.id)
		default:
		}
	}
	return res, nil
}

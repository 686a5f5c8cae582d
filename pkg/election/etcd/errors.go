package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// failed wraps the error of a request: a missing lease is election.ErrLost,
// a refused permission or credential is election.ErrDenied, and a request
// that could not reach etcd names the endpoints and, since gRPC reports
// only "context deadline exceeded" then, the cause found by dialling them.
func (b *Backend) failed(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("%s: %w: %w", what, election.ErrLost, err)
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrAuthFailed),
		errors.Is(err, rpctypes.ErrInvalidAuthToken), errors.Is(err, rpctypes.ErrUserEmpty),
		code(err) == codes.PermissionDenied, code(err) == codes.Unauthenticated:
		return fmt.Errorf("%s: %w: %w", what, election.ErrDenied, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, context.DeadlineExceeded), code(err) == codes.Unavailable,
		code(err) == codes.DeadlineExceeded:
		if cause := b.probe(ctx); cause != nil {
			return fmt.Errorf("%s: etcd at %s is unreachable: %w (%w)", what, strings.Join(b.opts.Endpoints, ","), cause, err)
		}
		return fmt.Errorf("%s on etcd at %s: %w", what, strings.Join(b.opts.Endpoints, ","), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// probe dials every endpoint once over TCP (or its Unix socket) and
// returns nil as soon as one accepts, else every dial error.
func (b *Backend) probe(ctx context.Context) error {
	d := net.Dialer{Timeout: min(b.opts.DialTimeout, time.Second)}
	var errs []error
	for _, ep := range b.opts.Endpoints {
		network, addr := dialAddr(ep)
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			_ = c.Close()
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// dialAddr turns an endpoint (host:port or a URL) into what net.Dial takes.
func dialAddr(ep string) (network, addr string) {
	scheme, rest, ok := strings.Cut(ep, "://")
	if !ok {
		return "tcp", ep
	}
	if strings.HasPrefix(scheme, "unix") {
		return "unix", rest
	}
	return "tcp", strings.TrimSuffix(rest, "/")
}

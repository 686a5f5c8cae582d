package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Which errors leave a request for another member, and which of those
// mark the member silent (it did not answer at all).
func TestMemberFaultClassification(t *testing.T) {
	tests := []struct {
		name              string
		err               error
		fault, unanswered bool
	}{
		{"our deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true, true},
		{"grpc deadline", status.Error(codes.DeadlineExceeded, "deadline"), true, true},
		{"not connected", fmt.Errorf("%w: refused", errNotConnected), true, true},
		{"watch closed", errWatchClosed, true, true},
		{"no leader (grpc)", rpctypes.ErrGRPCNoLeader, true, false},
		{"no leader (client)", rpctypes.ErrNoLeader, true, false},
		{"no leader (watch cancel reason)", rpctypes.Error(status.Error(codes.FailedPrecondition, "etcdserver: no leader")), true, false},
		{"timed out in a leader change", rpctypes.ErrTimeoutDueToLeaderFail, true, false},
		{"leader changed", rpctypes.ErrLeaderChanged, true, false},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), true, false},
		{"every member failed", fmt.Errorf("a: %w", errEveryMember), true, false},
		{"lease not found", rpctypes.ErrLeaseNotFound, false, false},
		{"permission denied", rpctypes.ErrPermissionDenied, false, false},
		{"auth failed", rpctypes.ErrAuthFailed, false, false},
		{"compacted", rpctypes.ErrCompacted, false, false},
		{"caller cancelled", context.Canceled, false, false},
		{"anything else", errors.New("boom"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := memberFault(tt.err); got != tt.fault {
				t.Errorf("memberFault(%v) = %v, want %v", tt.err, got, tt.fault)
			}
			if got := unanswered(tt.err); got != tt.unanswered {
				t.Errorf("unanswered(%v) = %v, want %v", tt.err, got, tt.unanswered)
			}
		})
	}
}

// A call starts with the member that answered last, passes over a member
// that went silent until every other one was tried, and returns to it
// once its quarantine is over.
func TestPoolOrder(t *testing.T) {
	p := newPool([]string{"a:1", "b:1", "c:1"})
	const q = time.Hour
	if got, want := p.order(q), []int{0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("fresh order %v, want %v", got, want)
	}
	p.answered(1)
	if got, want := p.order(q), []int{1, 2, 0}; !slices.Equal(got, want) {
		t.Fatalf("after b answered: %v, want %v", got, want)
	}
	// b stops answering: c comes first, b last.
	p.faulted(1, context.DeadlineExceeded)
	if got, want := p.order(q), []int{2, 0, 1}; !slices.Equal(got, want) {
		t.Fatalf("after b went silent: %v, want %v", got, want)
	}
	// c answers "no leader": it is passed over but not silent.
	p.faulted(2, rpctypes.ErrGRPCNoLeader)
	if got, want := p.order(q), []int{0, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("after c had no leader: %v, want %v", got, want)
	}
	// a goes silent after b: b, silent longer, is tried before a.
	p.faulted(0, context.DeadlineExceeded)
	if got, want := p.order(q), []int{2, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("after a went silent too: %v, want %v", got, want)
	}
	// Once the quarantine is over, silent members take their turn again.
	if got, want := p.order(0), []int{1, 2, 0}; !slices.Equal(got, want) {
		t.Fatalf("without quarantine: %v, want %v", got, want)
	}
	// An answer clears the silence.
	p.answered(0)
	if got, want := p.order(q), []int{0, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("after a answered: %v, want %v", got, want)
	}
}

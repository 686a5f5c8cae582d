package redislock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// newFromOptions builds a backend the way the command line does.
func newFromOptions(t *testing.T, o Options, identity string) *Backend {
	t.Helper()
	b, err := New(o, election.Params{Election: "test", Identity: identity, TTL: 5 * time.Second}, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// exercise runs a whole term and its observation, failing on any error.
func exercise(t *testing.T, b *Backend) {
	t.Helper()
	o := observe(t, b)
	c := candidate(t, b)
	term := campaign(t, c, 10*time.Second)
	if _, err := c.Renew(t.Context()); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	o.waitFor(t, election.Leader{ID: "pod-a", Token: term.Token})
	if err := c.Resign(t.Context()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	o.waitFor(t, election.Leader{})
}

// wantAuthError checks that Candidate and Observe return ErrAuth, which
// the engine reports as election.ErrDenied.
func wantAuthError(t *testing.T, b *Backend, mention string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, _, err := b.Candidate(ctx)
	if !errors.Is(err, ErrAuth) || !errors.Is(err, election.ErrDenied) || !strings.Contains(err.Error(), mention) {
		t.Fatalf("Candidate = %v, want ErrAuth (election.ErrDenied) mentioning %q", err, mention)
	}
	t.Logf("Candidate: %v", err)
	err = b.Observe(ctx, func(election.Leader) {})
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Observe = %v, want ErrAuth", err)
	}
}

func TestPassword(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword("s3cret"))
	t.Run("right password", func(t *testing.T) {
		exercise(t, newFromOptions(t, Options{Addrs: []string{srv.Addr()}, Password: "s3cret"}, "pod-a"))
	})
	t.Run("password file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		exercise(t, newFromOptions(t, Options{Addrs: []string{srv.Addr()}, PasswordFile: f}, "pod-a"))
	})
	t.Run("wrong password", func(t *testing.T) {
		wantAuthError(t, newFromOptions(t, Options{Addrs: []string{srv.Addr()}, Password: "wrong"}, "pod-a"), "WRONGPASS")
	})
	t.Run("no password", func(t *testing.T) {
		wantAuthError(t, newFromOptions(t, Options{Addrs: []string{srv.Addr()}}, "pod-a"), "NOAUTH")
	})
}

// TestACLUser: a user limited to the key prefix, its channels and the
// commands the package doc lists is enough; the same user with another
// prefix is refused clearly.
func TestACLUser(t *testing.T) {
	srv := redistest.Start(t, redistest.WithACL(
		"user default off",
		"user elector on >pw resetkeys ~leader-elector:* resetchannels &leader-elector:* -@all "+
			"+eval +evalsha +subscribe +ping +get +set +pexpire +pttl +del +publish +exists +time +hgetall +hget +hset +hdel +hincrby +config|get",
	))
	o := Options{Addrs: []string{srv.Addr()}, Username: "elector", Password: "pw"}
	t.Run("own prefix", func(t *testing.T) {
		exercise(t, newFromOptions(t, o, "pod-a"))
	})
	t.Run("other prefix", func(t *testing.T) {
		o := o
		o.KeyPrefix = "other:"
		wantAuthError(t, newFromOptions(t, o, "pod-a"), "NOPERM")
	})
	t.Run("wrong user", func(t *testing.T) {
		o := o
		o.Username = "nobody"
		wantAuthError(t, newFromOptions(t, o, "pod-a"), "WRONGPASS")
	})
}

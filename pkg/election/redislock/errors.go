package redislock

import (
	"fmt"
	"strings"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// ErrAuth means Redis refused the credentials or the user's ACL forbids a
// command, key or channel the election needs. It wraps election.ErrDenied,
// so the engine reports it as a permission problem.
var ErrAuth = fmt.Errorf("redis: authentication or permission denied: %w", election.ErrDenied)

// asAuthError returns err wrapped with ErrAuth and a hint if Redis refused
// the credentials or permissions, or nil otherwise.
func asAuthError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, code := range []string{"WRONGPASS", "NOAUTH", "NOPERM"} {
		if strings.Contains(msg, code) {
			return fmt.Errorf("%w (check the user name, the password and the user's ACL): %w", ErrAuth, err)
		}
	}
	return nil
}

// classify marks a refused credential or permission in err with ErrAuth.
func classify(err error) error {
	if a := asAuthError(err); a != nil {
		return a
	}
	return err
}

package redislock

import (
	"errors"
	"fmt"
	"strings"
)

// ErrAuth means Redis refused the credentials or the user's ACL forbids a
// command, key or channel the election needs. Retrying cannot help, so
// Campaign and Observe return it instead of retrying.
var ErrAuth = errors.New("redis: authentication or permission denied")

// asAuthError returns err wrapped with ErrAuth and a hint if Redis refused
// the credentials or permissions, or nil otherwise.
func asAuthError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, code := range []string{"WRONGPASS", "NOAUTH", "NOPERM"} {
		if strings.Contains(msg, code) {
			return fmt.Errorf("%w (check --redis-username, the password and the user's ACL): %w", ErrAuth, err)
		}
	}
	return nil
}

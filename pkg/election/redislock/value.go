package redislock

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// lockValue is what the lock key holds: who holds it, the candidacy that
// acquired it (its member name in the line, which a restarted process uses
// to release it: Reclaim), and a nonce that makes each acquisition's value
// unguessable so only its owner can renew or release it.
type lockValue struct {
	ID    string `json:"id"`
	Cand  string `json:"cand,omitempty"`
	Nonce string `json:"nonce"`
}

// nonce returns 128 random bits in hex.
func nonce() (string, error) {
	var n [16]byte
	if _, err := rand.Read(n[:]); err != nil {
		return "", fmt.Errorf("redis: read random nonce: %w", err)
	}
	return hex.EncodeToString(n[:]), nil
}

// newMember names a new candidacy: 128 random bits in hex, so no other
// process, not even one started with the same identity, ever has it.
func newMember() (string, error) { return nonce() }

// validMember reports whether s is a name newMember could return.
func validMember(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == strings.ToLower(s)
}

// newValue encodes identity and the candidacy's member name with a fresh
// 128-bit nonce.
func newValue(identity, member string) (string, error) {
	n, err := nonce()
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(lockValue{ID: identity, Cand: member, Nonce: n})
	if err != nil {
		return "", fmt.Errorf("redis: encode lock value: %w", err)
	}
	return string(b), nil
}

// parseValue returns the identity stored in a lock value.
func parseValue(s string) (string, error) {
	var v lockValue
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return "", fmt.Errorf("redis: lock value %q: %w", s, err)
	}
	if v.ID == "" || v.Nonce == "" {
		return "", fmt.Errorf("redis: lock value %q: missing id or nonce", s)
	}
	return v.ID, nil
}

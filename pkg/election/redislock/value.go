package redislock

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// lockValue is what the lock key holds: who holds it, and a nonce that makes
// each acquisition's value unguessable so only its owner can renew or
// release it.
type lockValue struct {
	ID    string `json:"id"`
	Nonce string `json:"nonce"`
}

// newValue encodes identity with a fresh 128-bit nonce.
func newValue(identity string) (string, error) {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", fmt.Errorf("redis: read random nonce: %w", err)
	}
	b, err := json.Marshal(lockValue{ID: identity, Nonce: hex.EncodeToString(nonce[:])})
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

package redislock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestValidate(t *testing.T) {
	valid := func(mod func(*Options)) Options {
		o := DefaultOptions()
		o.Addrs = []string{"redis:6379"}
		mod(&o)
		return o
	}
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string // substring; empty means valid
	}{
		{"single", valid(func(*Options) {}), ""},
		{"redlock 3", valid(func(o *Options) { o.Addrs = []string{"a:1", "b:1", "c:1"} }), ""},
		{"redlock 5 with TLS", valid(func(o *Options) {
			o.Addrs = []string{"a:1", "b:1", "c:1", "d:1", "e:1"}
			// Validate reads TLS files (a bad one is a start-up error, see
			// TestNewReadsFiles), so this case uses the system roots.
			o.TLS = true
		}), ""},
		{"password over TLS", valid(func(o *Options) { o.Addrs, o.TLS, o.Password = []string{"redis:6379"}, true, "pw" }), ""},
		{"password to loopback", valid(func(o *Options) { o.Addrs, o.Password = []string{"127.0.0.1:6379"}, "pw" }), ""},
		{"password in a mesh", valid(func(o *Options) {
			o.Addrs, o.Password, o.InsecurePlaintextAuth = []string{"redis:6379"}, "pw", true
		}), ""},
		{"password in plaintext", valid(func(o *Options) { o.Addrs, o.Password = []string{"127.0.0.1:6379", "redis:6379", "[::1]:6380"}, "pw" }), `TLS is off: the password would cross the network in plaintext to "redis:6379"`},
		{"password in the address", valid(func(o *Options) { o.Addrs = []string{"u:pw@redis:6379"} }), `"REDACTED@redis:6379"`},
		{"one server, two spellings", valid(func(o *Options) { o.Addrs = []string{"a:1", "A.:1", "c:1"} }), `"a:1" and "A.:1" are the same server`},
		{"namespace", valid(func(o *Options) { o.Namespace = "prod" }), ""},
		{"bad namespace", valid(func(o *Options) { o.Namespace = "prod/x" }), `Namespace "prod/x"`},
		{"scoped prefix without colon", valid(func(o *Options) { o.Namespace, o.KeyPrefix = "prod", "app" }), "must end with ':'"},
		{"scoped prefix with slash", valid(func(o *Options) { o.Namespace, o.KeyPrefix = "prod", "a/b:" }), "must not contain '/'"},
		{"legacy prefix is free", valid(func(o *Options) { o.KeyPrefix = "a/b" }), ""},
		{"no address", valid(func(o *Options) { o.Addrs = nil }), "Addrs: at least one"},
		{"two addresses", valid(func(o *Options) { o.Addrs = []string{"a:1", "b:1"} }), "Addrs: Redlock needs an odd number"},
		{"four addresses", valid(func(o *Options) { o.Addrs = []string{"a:1", "b:1", "c:1", "d:1"} }), "got 4"},
		{"no port", valid(func(o *Options) { o.Addrs = []string{"redis"} }), `Addrs "redis"`},
		{"bad port", valid(func(o *Options) { o.Addrs = []string{"redis:0"} }), "bad port"},
		{"no host", valid(func(o *Options) { o.Addrs = []string{":6379"} }), "missing host"},
		{"duplicate", valid(func(o *Options) { o.Addrs = []string{"a:1", "b:1", "a:1"} }), "given twice"},
		{"negative db", valid(func(o *Options) { o.DB = -1 }), "DB must not be negative"},
		{"password twice", valid(func(o *Options) { o.Password, o.PasswordFile = "x", "/f" }), "PasswordFile"},
		{"cacert without tls", valid(func(o *Options) { o.CACert = "ca.pem" }), "CACert needs TLS"},
		{"cert without tls", valid(func(o *Options) { o.Cert, o.Key = "c", "k" }), "Cert needs TLS"},
		{"cert without key", valid(func(o *Options) { o.TLS, o.Cert = true, "c.pem" }), "Cert needs Key"},
		{"key without cert", valid(func(o *Options) { o.TLS, o.Key = true, "k.pem" }), "Key needs Cert"},
		{"prefix with space", valid(func(o *Options) { o.KeyPrefix = "a b" }), "KeyPrefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewReadsFiles(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{Addrs: []string{"127.0.0.1:1"}, PasswordFile: pw}
	copts, err := o.clientOptions(opTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	if copts[0].Password != "s3cret" {
		t.Errorf("password from file = %q, want trimmed s3cret", copts[0].Password)
	}

	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"missing password file", Options{Addrs: []string{"h:1"}, PasswordFile: filepath.Join(dir, "nope")}, "PasswordFile"},
		{"empty password file", Options{Addrs: []string{"127.0.0.1:1"}, PasswordFile: empty}, "PasswordFile file " + empty + " is empty"},
		{"missing CA", Options{Addrs: []string{"h:1"}, TLS: true, CACert: filepath.Join(dir, "nope")}, "CACert"},
		{"CA without PEM", Options{Addrs: []string{"h:1"}, TLS: true, CACert: pw}, "no PEM certificates"},
		{"bad key pair", Options{Addrs: []string{"h:1"}, TLS: true, Cert: pw, Key: pw}, "Cert/Key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts, election.Params{Election: "e", Identity: "id", TTL: 5 * time.Second}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

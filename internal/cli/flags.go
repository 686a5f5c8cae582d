package cli

import (
	"github.com/spf13/pflag"

	"github.com/leader-elector/leader-elector/pkg/election/etcd"
	"github.com/leader-elector/leader-elector/pkg/election/redislock"
	"github.com/leader-elector/leader-elector/pkg/kube"
)

// The flags of each library package's options live here, so that pkg/
// needs no flag library and names no flag.

// addEtcdFlags registers the etcd backend's flags.
func addEtcdFlags(fs *pflag.FlagSet, o *etcd.Options) {
	fs.StringSliceVar(&o.Endpoints, "etcd-endpoints", nil, "etcd endpoints, comma separated (required for --backend etcd)")
	fs.StringVar(&o.Prefix, "etcd-prefix", etcd.DefaultPrefix, "key prefix ending in '/', without ':'; the election's keys live under <prefix><namespace>:<election>/")
	fs.DurationVar(&o.DialTimeout, "etcd-dial-timeout", etcd.DefaultDialTimeout, "timeout for connecting to one etcd member (TCP, TLS, authentication); each request is bounded by TTL/6 instead")
	fs.StringVar(&o.CACert, "etcd-cacert", "", "PEM file with the CA that signed etcd's server certificate; TLS for host:port endpoints (http:// endpoints are refused with it)")
	fs.StringVar(&o.Cert, "etcd-cert", "", "PEM client certificate for etcd (with --etcd-key)")
	fs.StringVar(&o.Key, "etcd-key", "", "PEM private key for --etcd-cert")
	fs.StringVar(&o.Username, "etcd-username", "", "etcd user; the password comes from the environment or --etcd-password-file")
	fs.StringVar(&o.PasswordFile, "etcd-password-file", "", "file holding the etcd password (empty file: error)")
	fs.BoolVar(&o.InsecurePlaintextAuth, "etcd-insecure-plaintext-auth", false, "allow --etcd-username without TLS to a non-loopback endpoint (only where the network encrypts, e.g. a service mesh)")
}

// addRedisFlags registers the Redis backend's flags, with o's current
// values as defaults.
func addRedisFlags(fs *pflag.FlagSet, o *redislock.Options) {
	fs.StringSliceVar(&o.Addrs, "redis-addr", o.Addrs,
		"Redis address host:port; three or more (an odd number) independent masters select Redlock")
	fs.StringVar(&o.Username, "redis-username", o.Username, "Redis ACL user name")
	fs.StringVar(&o.PasswordFile, "redis-password-file", o.PasswordFile, "file holding the Redis password (empty file: error)")
	fs.BoolVar(&o.InsecurePlaintextAuth, "redis-insecure-plaintext-auth", o.InsecurePlaintextAuth, "allow a Redis password without --redis-tls to a non-loopback address (only where the network encrypts, e.g. a service mesh)")
	fs.IntVar(&o.DB, "redis-db", o.DB, "Redis logical database number")
	fs.BoolVar(&o.TLS, "redis-tls", o.TLS, "connect to Redis with TLS")
	fs.StringVar(&o.CACert, "redis-cacert", o.CACert, "PEM CA bundle that verifies Redis (default: system roots)")
	fs.StringVar(&o.Cert, "redis-cert", o.Cert, "PEM client certificate for Redis (needs --redis-key)")
	fs.StringVar(&o.Key, "redis-key", o.Key, "PEM private key of --redis-cert")
	fs.StringVar(&o.KeyPrefix, "redis-key-prefix", o.KeyPrefix, "prefix ending in ':', without '/', of every Redis key and channel: <prefix><namespace>/<election>")
	fs.BoolVar(&o.AssumeNoEviction, "redis-assume-noeviction", o.AssumeNoEviction,
		"vouch that every Redis master runs maxmemory-policy noeviction, for users that may read neither CONFIG GET nor INFO; a policy that is read and can evict the lock is refused regardless")
}

// addKubeFlags registers the Kubernetes publisher's flags, with o's
// current values as defaults.
func addKubeFlags(fs *pflag.FlagSet, o *kube.Options) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file; empty means the in-cluster configuration")
	fs.StringVar(&o.PodName, "pod-name", o.PodName, "this pod's name (default: $POD_NAME); Kubernetes publishing is off when empty")
	fs.StringVar(&o.PodNamespace, "pod-namespace", o.PodNamespace, "this pod's namespace (default: $POD_NAMESPACE, else the service-account namespace file)")
	fs.StringVar(&o.RoleLabel, "role-label", o.RoleLabel, "label key that carries this pod's role")
	fs.StringVar(&o.LeaderValue, "leader-value", o.LeaderValue, "role label value while leading")
	fs.StringVar(&o.FollowerValue, "follower-value", o.FollowerValue, "role label value while not leading")
	fs.StringVar(&o.ElectionLabel, "election-label", o.ElectionLabel, "label key whose value is the election name")
	fs.StringVar(&o.ReadinessGate, "readiness-gate", o.ReadinessGate, "pod condition type that is True only while leading; empty turns it off")
	fs.BoolVar(&o.Events, "kube-events", o.Events, "record BecameLeader and SteppedDown events on the pod")
	fs.DurationVar(&o.Resync, "kube-resync", o.Resync, "how often the pod's labels and condition are checked when nothing changed")
}

// kubeFlags names the flag of each field a kube.Options error may name.
var kubeFlags = map[string]string{
	"Kubeconfig": "--kubeconfig", "PodName": "--pod-name", "PodNamespace": "--pod-namespace",
	"RoleLabel": "--role-label", "LeaderValue": "--leader-value", "FollowerValue": "--follower-value",
	"ElectionLabel": "--election-label", "ReadinessGate": "--readiness-gate", "Resync": "--kube-resync",
}

package cli

import (
	"testing"
)

func TestPodUIDComesFromTheDownwardAPI(t *testing.T) {
	base := []string{"--election=e", "--etcd-endpoints=127.0.0.1:2379", "--id=a", "--incarnation-file=/run/le/incarnation"}
	cfg, err := parseConfig(base, env(map[string]string{"POD_UID": "uid-env"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Incarnation.PodUID != "uid-env" || cfg.Incarnation.File != "/run/le/incarnation" {
		t.Errorf("incarnation flags %+v, want the file and POD_UID", cfg.Incarnation)
	}
	cfg, err = parseConfig(append(base, "--pod-uid=uid-flag"), env(map[string]string{"POD_UID": "uid-env"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Incarnation.PodUID != "uid-flag" {
		t.Errorf("--pod-uid %q, want the flag to win over POD_UID", cfg.Incarnation.PodUID)
	}
}

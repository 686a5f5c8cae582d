package redistest

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// send runs one inline command and returns the first reply line.
func send(t *testing.T, addr, cmd string) (string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestStartStopRestart(t *testing.T) {
	servers := StartN(t, 2)
	if servers[0].Addr() == servers[1].Addr() {
		t.Fatalf("two servers share %s", servers[0].Addr())
	}
	s := servers[0]
	if got, err := send(t, s.Addr(), "SET k v"); err != nil || got != "+OK" {
		t.Fatalf("SET: %q, %v", got, err)
	}
	s.Stop()
	if _, err := send(t, s.Addr(), "PING"); err == nil {
		t.Fatal("stopped server still answers")
	}
	s.Restart()
	if got, err := send(t, s.Addr(), "EXISTS k"); err != nil || got != ":0" {
		t.Fatalf("restarted server is not empty: EXISTS k = %q, %v", got, err)
	}
}

func TestPassword(t *testing.T) {
	s := Start(t, WithPassword("secret"))
	if got, _ := send(t, s.Addr(), "GET k"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("GET without auth = %q, want -NOAUTH", got)
	}
	if got, _ := send(t, s.Addr(), "AUTH secret"); got != "+OK" {
		t.Fatalf("AUTH = %q", got)
	}
}

func TestACL(t *testing.T) {
	s := Start(t, WithACL("user default off", "user app on >pw ~app:* +get"))
	if got, _ := send(t, s.Addr(), "AUTH app pw"); got != "+OK" {
		t.Fatalf("AUTH app = %q", got)
	}
	if got, _ := send(t, s.Addr(), "AUTH default x"); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Fatalf("AUTH default = %q, want -WRONGPASS", got)
	}
}

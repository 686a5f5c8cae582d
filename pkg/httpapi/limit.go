package httpapi

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// limitListener bounds the connections a listener keeps open, so a flood of
// connections from the pod network costs bounded memory (each open
// connection costs a goroutine and net/http's read and write buffers).
//
//   - A client (one source IP) holds at most perClient connections; more are
//     refused.
//   - Past max connections in all, a newcomer from a lighter client evicts
//     the oldest connection of the client holding the most, so one busy
//     source cannot lock out a probe or scraper from another; otherwise the
//     newcomer is refused.
//
// A refused connection gets a short 503 JSON answer and is closed without
// reading its request, so the client may see a reset instead. Behind a
// proxy that forwards every connection from one address (a service mesh
// forwards from 127.0.0.6) all clients are one client; the caps still bound
// memory, but fairness between them is lost.
type limitListener struct {
	net.Listener
	max, perClient int
	log            *slog.Logger

	mu      sync.Mutex
	open    int
	clients map[string][]*limitedConn // oldest first

	refused  atomic.Int64 // since the last log line
	lastWarn atomic.Int64 // unix nanoseconds of the last log line
}

// socketBuffer is the send and receive buffer size set on each accepted TCP
// connection (Linux doubles it for bookkeeping).
const socketBuffer = 16 << 10

// deadPeerTimeout is how long sent data may stay unacknowledged before the
// kernel drops the connection (TCP_USER_TIMEOUT). A /watch client that
// vanished without closing (its pod deleted, a partition) is then dropped
// within about one keep-alive interval plus this, instead of after the
// kernel's default of about 15 minutes of retransmissions.
const deadPeerTimeout = 20 * time.Second

// setUserTimeout sets TCP_USER_TIMEOUT on c; failure only loses the early
// detection, so it is ignored.
func setUserTimeout(c *net.TCPConn, d time.Duration) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}

// refusalBody is the answer to a refused connection, written raw: such a
// connection never reaches net/http.
const refusalBody = `{"error":"too many connections; retry in a moment"}`

var refusalAnswer = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\n" +
	"Retry-After: 1\r\n" +
	"Connection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(refusalBody)) + "\r\n" +
	"\r\n" + refusalBody)

func newLimitListener(ln net.Listener, max, perClient int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: max, perClient: perClient, log: log, clients: map[string][]*limitedConn{}}
}

// Accept returns the next admitted connection.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc, victim := l.admit(c)
		if victim != nil {
			// Closing the connection under net/http ends its request;
			// net/http then closes it again through the wrapper, which
			// is a no-op.
			_ = victim.Conn.Close()
		}
		if lc == nil {
			l.refuse(c)
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			// Fixed, small socket buffers: the kernel's autotuning would
			// let each connection hold megabytes a slow reader never
			// takes, and socket memory counts against the container's
			// memory limit. Answers larger than this just take several
			// writes.
			_ = tc.SetWriteBuffer(socketBuffer)
			_ = tc.SetReadBuffer(socketBuffer)
			setUserTimeout(tc, deadPeerTimeout)
		}
		return lc, nil
	}
}

// admit decides on c: it returns the wrapped connection (nil when refused)
// and a connection evicted to make room, if any.
func (l *limitListener) admit(c net.Conn) (admitted, victim *limitedConn) {
	key := clientKey(c.RemoteAddr())
	l.mu.Lock()
	defer l.mu.Unlock()
	mine := len(l.clients[key])
	if mine >= l.perClient {
		return nil, nil
	}
	if l.open >= l.max {
		heaviest, n := "", 0
		for k, cs := range l.clients {
			if len(cs) > n {
				heaviest, n = k, len(cs)
			}
		}
		// Evict only from a client that would still hold more than the
		// newcomer's client afterwards, so two clients never take turns
		// evicting each other.
		if heaviest == key || n <= mine+1 {
			return nil, nil
		}
		victim = l.clients[heaviest][0]
		l.removeLocked(victim)
	}
	admitted = &limitedConn{Conn: c, l: l, key: key}
	l.clients[key] = append(l.clients[key], admitted)
	l.open++
	return admitted, victim
}

// removeLocked forgets lc; it reports false when lc was already forgotten.
func (l *limitListener) removeLocked(lc *limitedConn) bool {
	cs := l.clients[lc.key]
	for i, x := range cs {
		if x == lc {
			cs = append(cs[:i:i], cs[i+1:]...)
			if len(cs) == 0 {
				delete(l.clients, lc.key)
			} else {
				l.clients[lc.key] = cs
			}
			l.open--
			return true
		}
	}
	return false
}

func (l *limitListener) release(lc *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(lc)
}

// refuse answers 503 and closes c. The write goes to an empty socket
// buffer, so it does not block; the deadline is a guard.
func (l *limitListener) refuse(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(refusalAnswer)
	_ = c.Close()
	// One log line per 10 s at most: a flood must not flood the log too.
	n := l.refused.Add(1)
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last >= int64(10*time.Second) && l.lastWarn.CompareAndSwap(last, now) {
		l.refused.Add(-n)
		l.log.Warn("http api refusing connections: connection limit reached",
			"addr", l.Addr().String(), "refused", n, "max", l.max, "max_per_client", l.perClient)
	}
}

// open reports the number of admitted connections still open.
func (l *limitListener) openConns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// clientKey is the source IP of a TCP connection; every connection to a
// Unix socket shares one key.
func clientKey(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap().String()
		}
	}
	if a == nil {
		return "unix"
	}
	return a.Network()
}

// limitedConn gives its slot back when closed.
type limitedConn struct {
	net.Conn
	l    *limitListener
	key  string
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c) })
	return c.Conn.Close()
}

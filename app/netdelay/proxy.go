// Package netdelay puts a network between the app and its databases, on
// purpose: a loopback TCP proxy, run as a child process of its own, that
// delivers every chunk of bytes a fixed delay after it was sent, both ways.
// Stage 4's baseline at 1 ms and stage 5's fan-out lesson are measured
// through it (serve --db-latency). It knows nothing of the app.
package netdelay

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A database across the network, on purpose (--db-latency, DB_LATENCY).
//
// This is a simulation. On one machine PostgreSQL and Redis answer in tens of
// microseconds, so the cost of a page's round trips (what stage 5's fan-out
// cuts) hides. With --db-latency D the app reaches both through a loopback
// proxy that delivers every chunk of bytes D after it was sent, in both
// directions: a query's round trip costs 2·D more, as it would with the
// database on another machine D away. New connections also wait one round
// trip (the TCP handshake) before their first bytes leave.
//
// Why a loopback TCP proxy and not a dialer wrapper (pgx's DialFunc,
// go-redis's Dialer)? The app's sockets stay real sockets: deadlines, context
// cancellation (pgx cancels by setting a deadline), go-redis timeouts and
// closes behave exactly as with a remote server, where a wrapped net.Conn
// would have to reimplement all of them. Nothing about how the clients are
// built changes, only the address they dial, so stage 0's CGI children (other
// processes) go through it too, and so can psql. The price is one more
// loopback hop (tens of microseconds) and two more file descriptors per
// connection.
//
// Why in a process of its own (this binary, as `flickrkillr netdelay`)?
// A network does not slow down when the app's CPU is busy, but goroutines
// in the app's process do: under a full load, a goroutine woken by the
// network waits behind every runnable one (32 logins hashing passwords on 2
// cores: up to ~160 ms). In the app's process, each round trip took four such
// wake-ups instead of one, and Redis's 200 ms timeouts fired (29 failed
// session commits in the load tool's log-in burst, against 0-1 without the
// proxy). In its own process, the kernel wakes it promptly, and its CPU is
// not counted as the app's.

// Proxy forwards each connection it accepts to target with delay
// added each way.
type Proxy struct {
	ln      net.Listener
	network string // of the target: tcp or unix
	target  string
	delay   time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Start listens on a free loopback port and forwards to target (network
// tcp or unix) with delay added each way.
func Start(network, target string, delay time.Duration) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netdelay: %w", err)
	}
	p := &Proxy{ln: ln, network: network, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the host:port the app dials instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and cuts every forwarded connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		accepted := time.Now()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if !p.track(client) {
				return
			}
			defer p.untrack(client)
			server, err := net.DialTimeout(p.network, p.target, 5*time.Second)
			if err != nil {
				return // the client sees the connection close, as with a refused one
			}
			if !p.track(server) {
				return
			}
			defer p.untrack(server)
			// The client's first bytes leave after the handshake's round trip.
			handshake := accepted.Add(2 * p.delay)
			done := make(chan struct{}, 2)
			go func() { delayedCopy(server, client, p.delay, handshake); done <- struct{}{} }()
			go func() { delayedCopy(client, server, p.delay, time.Time{}); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// chunk is bytes read at one moment, to be written at due.
type chunk struct {
	buf *[]byte
	n   int
	due time.Time
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// delayedCopy copies src to dst, each chunk written delay after it was read
// (and not before notBefore). A reader stamps chunks into a queue while the
// writer waits for the head's due time, so the delay does not serialise the
// throughput: a chunk read while another waits leaves delay after its own
// arrival, not after the other's departure.
func delayedCopy(dst, src net.Conn, delay time.Duration, notBefore time.Time) {
	queue := make(chan chunk, 64) // a full queue stops the reader: the window is full
	var readErr error
	go func() {
		defer close(queue)
		for {
			b := chunkPool.Get().(*[]byte)
			n, err := src.Read(*b)
			if n > 0 {
				sent := time.Now()
				if sent.Before(notBefore) {
					sent = notBefore
				}
				queue <- chunk{b, n, sent.Add(delay)}
			} else {
				chunkPool.Put(b)
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	failed := false
	for c := range queue {
		if !failed {
			if wait := time.Until(c.due); wait > 0 {
				timer.Reset(wait)
				<-timer.C
			}
			if _, err := dst.Write((*c.buf)[:c.n]); err != nil {
				failed = true
				src.Close() // stops the reader; what is queued is dropped below
				dst.Close()
			}
		}
		chunkPool.Put(c.buf)
	}
	if failed {
		return
	}
	if errors.Is(readErr, io.EOF) {
		// The sender finished: pass the half-close on, as TCP would.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			return
		}
	}
	dst.Close()
	src.Close()
}

// Spawn runs the proxy in a child process, this binary as
// `flickrkillr netdelay`, and returns the address it listens on. The
// child lives until stop closes its standard input (or this process dies,
// which closes it too).
func Spawn(network, target string, delay time.Duration) (addr string, stop func() error, err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("netdelay: find own binary: %w", err)
	}
	cmd := exec.Command(exe, "netdelay", "--network", network, "--target", target, "--delay", delay.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("netdelay: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return "", nil, fmt.Errorf("netdelay: the proxy to %s did not start", target)
	}
	stop = func() error {
		stdin.Close()
		cmd.Wait()
		return nil
	}
	return strings.TrimSpace(line), stop, nil
}

// ServeChild is the child's side (`flickrkillr netdelay`): it
// prints the address it listens on and forwards until its standard input
// closes. It ignores Ctrl-C, which the terminal sends to the whole process
// group: the server it serves still drains its requests, through it.
func ServeChild(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("netdelay", flag.ContinueOnError)
	network := fs.String("network", "tcp", "tcp or unix")
	target := fs.String("target", "", "address to forward to")
	delay := fs.Duration("delay", 0, "added each way")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" || *delay <= 0 {
		return errors.New("netdelay needs --target and a positive --delay")
	}
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	p, err := Start(*network, *target, *delay)
	if err != nil {
		return err
	}
	defer p.Close()
	if _, err := fmt.Fprintln(stdout, p.Addr()); err != nil {
		return err
	}
	io.Copy(io.Discard, stdin)
	return nil
}

// PGTarget reads where a postgres:// URL points (a TCP host:port, or a Unix
// socket directory in ?host=/dir) and gives a function that rewrites the URL
// to another host:port.
func PGTarget(dsn string) (network, target string, rewrite func(addr string) string, err error) {
	bad := func(msg string) error { return errors.New(msg) }
	u, err := url.Parse(dsn)
	if err != nil {
		return "", "", nil, bad("DATABASE_URL is not a URL")
	}
	if strings.Contains(u.Host, ",") {
		return "", "", nil, bad("needs a DATABASE_URL with one host, not a list")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	q := u.Query()
	if h := q.Get("host"); h != "" {
		host = h
	}
	if p := q.Get("port"); p != "" {
		port = p
	}
	q.Del("host")
	q.Del("port")
	switch {
	case strings.HasPrefix(host, "/"):
		network, target = "unix", host+"/.s.PGSQL."+port
	case host == "":
		network, target = "unix", "/var/run/postgresql/.s.PGSQL."+port
	default:
		network, target = "tcp", net.JoinHostPort(host, port)
	}
	return network, target, func(addr string) string {
		v := *u
		v.Host = addr
		v.RawQuery = q.Encode()
		return v.String()
	}, nil
}

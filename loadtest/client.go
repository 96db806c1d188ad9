package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// client is one virtual user's browser, reduced to what a load test needs:
// one keep-alive HTTP/1.1 connection at a time, its own cookies, no redirect
// following, no compression. It is not safe for concurrent use: a virtual
// user sends one request at a time.
//
// Why not net/http's client? On a trivial endpoint its per-request cost
// (two goroutines per connection handing each request over, a header map per
// response) takes enough of a small machine's CPU from the server to change
// the number being measured; see docs/loadtest.md for the comparison with wrk.
type client struct {
	addr    string // host:port to dial
	host    string // the Host header
	prefix  string // the base URL's path, before every request's path
	timeout time.Duration

	mu      sync.Mutex // guards conn and watched against abort, which runs on another goroutine
	conn    net.Conn
	br      *bufio.Reader
	reused  bool      // conn has answered a request before
	expires time.Time // conn's deadline, renewed at most once a second

	watched context.Context // the context whose end aborts the request in flight
	unwatch func() bool

	req     []byte   // the request being written, reused
	head    bool     // it is a HEAD: the answer has no body
	cookies []cookie // the jar: one host, so names are enough
	cookieH string   // the Cookie header built from the jar
}

type cookie struct{ name, value string }

func newClient(base string, timeout time.Duration) (*client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("--url must be an http:// URL (got %q)", base)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return &client{
		addr:    net.JoinHostPort(u.Hostname(), port),
		host:    u.Host,
		prefix:  strings.TrimRight(u.Path, "/"),
		timeout: timeout,
	}, nil
}

// base is the URL the client was made for, for messages.
func (c *client) base() string { return "http://" + c.host + c.prefix }

// errAborted is a request cut off because its context ended (the run's end,
// Ctrl-C, a set-up time limit).
var errAborted = errors.New("request cut off")

// do sends one request and reads the whole answer into res. A form, when
// not nil, is posted urlencoded. Cookies the answer sets go into the jar.
func (c *client) do(ctx context.Context, method, path string, form url.Values, res *response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.buildRequest(method, path, form)
	return c.send(ctx, res)
}

// doBody sends a request with a body of its own type (the upload scenario's
// multipart form).
func (c *client) doBody(ctx context.Context, method, path, contentType string, body []byte, res *response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.req = appendBody(c.startRequest(method, path), contentType, body)
	return c.send(ctx, res)
}

// send sends the built request c.req and reads the answer into res.
func (c *client) send(ctx context.Context, res *response) error {
	c.watch(ctx)
	reused := c.reused // close() clears it with the connection
	err := c.roundTrip(ctx, res)
	if err != nil && reused && ctx.Err() == nil && errors.Is(err, errNoAnswer) && closedByPeer(err) {
		// The server may close a kept-alive connection at any time (its idle
		// timeout, a restart). Like browsers, send the request once more on a
		// new connection when the old one was closed without a byte of answer.
		c.close()
		err = c.roundTrip(ctx, res)
	}
	if err != nil {
		c.close()
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", errAborted, ctx.Err())
		}
	}
	return err
}

// watch makes ctx's end abort the request in flight. The registration is
// kept while the context is the same, which it is for a whole run.
func (c *client) watch(ctx context.Context) {
	if ctx == c.watched {
		return
	}
	if c.unwatch != nil && !c.unwatch() {
		c.close() // the old context ended: its abort may have spoilt the connection
	}
	c.mu.Lock()
	c.watched = ctx
	c.mu.Unlock()
	c.unwatch = context.AfterFunc(ctx, func() { c.abort(ctx) })
}

// abort makes the connection's pending reads and writes fail at once, if ctx
// is still the one watched.
func (c *client) abort(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watched == ctx && c.conn != nil {
		c.conn.SetDeadline(time.Unix(1, 0))
	}
}

// Close releases the connection and stops watching the context.
func (c *client) Close() {
	if c.unwatch != nil {
		c.unwatch()
		c.unwatch = nil
	}
	c.close()
	c.mu.Lock()
	c.watched = nil
	c.mu.Unlock()
}

func (c *client) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.reused, c.expires = nil, false, time.Time{}
	}
}

func (c *client) buildRequest(method, path string, form url.Values) {
	b := c.startRequest(method, path)
	if form != nil {
		b = appendBody(b, "application/x-www-form-urlencoded", form.Encode())
	} else {
		b = append(b, "\r\n"...)
	}
	c.req = b
}

// startRequest writes the request line and the common headers into c.req's buffer.
func (c *client) startRequest(method, path string) []byte {
	c.head = method == http.MethodHead
	b := c.req[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, c.prefix...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	b = append(b, "\r\nUser-Agent: flickrkillr-loadtest\r\n"...)
	if c.cookieH != "" {
		b = append(b, "Cookie: "...)
		b = append(b, c.cookieH...)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendBody ends the headers with the body's type and length, then the body.
func appendBody[T string | []byte](b []byte, contentType string, body T) []byte {
	b = append(b, "Content-Type: "...)
	b = append(b, contentType...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// errNoAnswer marks a failure before any byte of the answer arrived.
var errNoAnswer = errors.New("no answer")

// closedByPeer says whether err means the other side closed the connection
// (rather than, say, a timeout).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *client) roundTrip(ctx context.Context, res *response) error {
	if err := c.connect(ctx); err != nil {
		return err
	}
	if _, err := c.conn.Write(c.req); err != nil {
		return fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	keep, err := c.readResponse(res)
	if err != nil {
		return err
	}
	c.reused = true
	if !keep {
		c.close()
	}
	return nil
}

func (c *client) connect(ctx context.Context) error {
	now := time.Now()
	if c.conn != nil {
		if now.Add(c.timeout - time.Second).After(c.expires) {
			// Renewed under the lock: an abort in between must not be undone.
			c.mu.Lock()
			if ctx.Err() == nil {
				c.expires = now.Add(c.timeout)
				c.conn.SetDeadline(c.expires)
			}
			c.mu.Unlock()
		}
		return nil
	}
	conn, err := net.DialTimeout("tcp", c.addr, min(c.timeout, 10*time.Second))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctx.Err() != nil {
		conn.Close()
		return fmt.Errorf("%w: %w", errAborted, ctx.Err())
	}
	c.conn, c.reused = conn, false
	c.expires = now.Add(c.timeout)
	conn.SetDeadline(c.expires)
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

// setCookie stores or deletes a cookie, as a browser would for one host.
func (c *client) setCookie(header string) {
	ck, err := http.ParseSetCookie(header)
	if err != nil {
		return // browsers ignore a cookie they cannot parse
	}
	gone := ck.MaxAge < 0 || (!ck.Expires.IsZero() && ck.Expires.Before(time.Now()))
	jar := c.cookies[:0]
	for _, old := range c.cookies {
		if old.name != ck.Name {
			jar = append(jar, old)
		}
	}
	if !gone {
		jar = append(jar, cookie{ck.Name, ck.Value})
	}
	c.cookies = jar
	var h []byte
	for i, k := range jar {
		if i > 0 {
			h = append(h, "; "...)
		}
		h = append(h, k.name...)
		h = append(h, '=')
		h = append(h, k.value...)
	}
	c.cookieH = string(h)
}

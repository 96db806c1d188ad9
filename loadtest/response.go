package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
)

// response is the part of an answer the checks look at. body and
// contentType are reused by the next request.
type response struct {
	status      int
	contentType []byte
	location    []byte
	body        []byte
	timing      []byte // Server-Timing (servertiming.go)
	retryAfter  []byte // Retry-After, read by the sign-ins (signin.go)
	shed        []byte // X-Shed: what the server shed on purpose (signin.go)
	front       []byte // X-Front-Cache: whether stage 8's front cache answered (frontcache.go)
}

// readResponse reads one answer (skipping 1xx ones); keep says whether the
// connection can carry the next request.
func (c *client) readResponse(res *response) (keep bool, err error) {
	for {
		keep, err = c.readOne(res)
		if err != nil || res.status >= 200 {
			return keep, err
		}
	}
}

func (c *client) readOne(res *response) (keep bool, err error) {
	res.status, res.contentType, res.location, res.body = 0, res.contentType[:0], res.location[:0], res.body[:0]
	res.timing, res.retryAfter, res.shed, res.front = res.timing[:0], res.retryAfter[:0], res.shed[:0], res.front[:0]
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 {
			return false, fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		return false, err
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return false, fmt.Errorf("malformed status line %q", trimCRLF(line))
	}
	res.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return false, fmt.Errorf("malformed status line %q", trimCRLF(line))
	}
	keep = line[7] == '1' // HTTP/1.0 closes unless it says otherwise; we do not ask it to
	length, chunked := int64(-1), false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return false, errors.New("response header line too long")
			}
			return false, err
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return false, fmt.Errorf("malformed header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.ParseInt(string(value), 10, 64)
			if err != nil || length < 0 {
				return false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
			if !chunked {
				return false, fmt.Errorf("unsupported Transfer-Encoding %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		case bytes.EqualFold(name, []byte("Content-Type")):
			res.contentType = append(res.contentType, value...)
		case bytes.EqualFold(name, []byte("Server-Timing")):
			res.timing = append(res.timing, value...)
		case bytes.EqualFold(name, []byte("X-Front-Cache")):
			res.front = append(res.front, value...)
		case bytes.EqualFold(name, []byte("Location")):
			res.location = append(res.location, value...)
		case bytes.EqualFold(name, []byte("Retry-After")):
			res.retryAfter = append(res.retryAfter, value...)
		case bytes.EqualFold(name, []byte(shedHeader)):
			res.shed = append(res.shed, value...)
		case bytes.EqualFold(name, []byte("Set-Cookie")):
			c.setCookie(string(value))
		}
	}
	switch {
	case c.head || res.status < 200 || res.status == http.StatusNoContent || res.status == http.StatusNotModified:
		return keep, nil
	case chunked:
		return keep, c.readChunked(res)
	case length >= 0:
		res.body, err = readN(c.br, res.body, length)
		return keep, err
	default: // the body ends when the server closes
		buf := bytes.NewBuffer(res.body)
		_, err = buf.ReadFrom(c.br)
		res.body = buf.Bytes()
		return false, err
	}
}

func (c *client) readChunked(res *response) error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("chunked body: %w", err)
		}
		size, _, _ := bytes.Cut(trimCRLF(line), []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("chunked body: bad chunk size %q", size)
		}
		if n == 0 {
			break
		}
		if res.body, err = readN(c.br, res.body, n); err != nil {
			return fmt.Errorf("chunked body: %w", err)
		}
		if line, err = c.br.ReadSlice('\n'); err != nil || len(trimCRLF(line)) != 0 {
			return errors.New("chunked body: no line end after a chunk")
		}
	}
	for { // trailers, up to the empty line
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("chunked body: %w", err)
		}
		if len(trimCRLF(line)) == 0 {
			return nil
		}
	}
}

// readN appends exactly n bytes from r to buf.
func readN(r io.Reader, buf []byte, n int64) ([]byte, error) {
	if n > 1<<30 {
		return buf, fmt.Errorf("body of %d bytes is too large", n)
	}
	start := len(buf)
	buf = slices.Grow(buf, int(n))[:start+int(n)]
	if _, err := io.ReadFull(r, buf[start:]); err != nil {
		return buf[:start], fmt.Errorf("body: %w", err)
	}
	return buf, nil
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

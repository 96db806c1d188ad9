// Package tickets issues ids unique across every shard: Flickr's ticket
// servers. Flickr ran `REPLACE INTO Tickets64 (stub) VALUES ('a'); SELECT
// LAST_INSERT_ID();` on two MySQL servers with auto-increment step 2 and
// offsets 1 and 2. PostgreSQL's sequence is that counter without the
// table: each server keeps `flickrkillr_tickets` with INCREMENT 2, one
// starting odd and one even, so the two never issue the same id and either
// alone keeps issuing when the other is down. Ids stay small (bigint, not
// GUIDs) and roughly follow time, which the pages' "newest first" needs.
package tickets

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// Sequence is the ticket sequence's name on each server.
const Sequence = "flickrkillr_tickets"

// Setup makes (or keeps) the ticket sequence on the server at dsn: INCREMENT
// 2, its next id of parity offset (1: odd, 2: even) and above above (the
// highest id already in use, so a server set up on seeded data never
// issues one of the seed's ids). Run once per server; running it again
// never moves the sequence back. A sequence it would keep that steps by
// other than 2, or issues the other parity, is an error: keeping it would
// issue the other server's ids.
func Setup(ctx context.Context, dsn string, offset int, above int64) error {
	if offset != 1 && offset != 2 {
		return fmt.Errorf("tickets: offset must be 1 (odd) or 2 (even), not %d", offset)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("tickets: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE SEQUENCE IF NOT EXISTS %s INCREMENT BY 2 START WITH %d MINVALUE 1`, Sequence, offset)); err != nil {
		return fmt.Errorf("tickets: create the sequence: %w", err)
	}
	var step, last int64
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT p.seqincrement, s.last_value
		FROM %[1]s s, pg_sequence p WHERE p.seqrelid = '%[1]s'::regclass`, Sequence)).Scan(&step, &last)
	if err != nil {
		return fmt.Errorf("tickets: read the sequence: %w", err)
	}
	if step != 2 {
		return fmt.Errorf("tickets: %s on this server steps by %d, not 2: drop it or set it up by hand", Sequence, step)
	}
	if (last-int64(offset))%2 != 0 {
		return fmt.Errorf("tickets: %s on this server issues %s ids, not %s: is this the other ticket server?", Sequence, parity(3-offset), parity(offset))
	}
	// The next id: the first of the server's parity above both `above` and
	// what it has issued already (read in the statement that moves it, so
	// that ids issued meanwhile on a live server are not issued again).
	next := above + 1
	if (next-int64(offset))%2 != 0 {
		next++
	}
	_, err = conn.Exec(ctx, fmt.Sprintf(`SELECT setval('%[1]s', GREATEST($1::bigint, CASE WHEN s.is_called THEN s.last_value + 2 ELSE s.last_value END), false)
		FROM %[1]s s`, Sequence), next)
	if err != nil {
		return fmt.Errorf("tickets: move the sequence past %d: %w", above, err)
	}
	return nil
}

func parity(offset int) string {
	if offset == 1 {
		return "odd"
	}
	return "even"
}

// Server is one ticket server.
type Server struct {
	Name string
	DB   *gorm.DB
}

// Options tune the Tickets; zero values take the defaults.
type Options struct {
	// Timeout bounds one ticket from one server (1 s) before the other is asked.
	Timeout time.Duration
	// Rest is how long a server that failed is not asked first (2 s): it is
	// still asked when every other server fails.
	Rest time.Duration
}

// Tickets hands out ids from its servers in turn, skipping a server that
// failed for Rest.
type Tickets struct {
	o       Options
	servers []*server
	next    atomic.Uint64
}

type server struct {
	Server
	issued, failed atomic.Int64
	mu             sync.Mutex
	downUntil      time.Time // zero while it answers
}

// Stats is what one server did.
type Stats struct {
	Name           string
	Issued, Failed int64
	Down           bool // failed within Rest (or failed, and is being probed)
}

// New asks servers in turn.
func New(servers []Server, o Options) *Tickets {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Rest <= 0 {
		o.Rest = 2 * time.Second
	}
	t := &Tickets{o: o}
	for _, s := range servers {
		t.servers = append(t.servers, &server{Server: s})
	}
	return t
}

// ErrNoServer: every ticket server failed.
var ErrNoServer = errors.New("tickets: no ticket server answered")

// Next is a new id. It asks the server whose turn it is, unless that one
// failed within Rest; a server that fails is marked and the next is asked,
// so one server down costs its timeout once per Rest, not per id: when its
// rest ends, one Next probes it while the others go on skipping it. When
// every server not resting fails, the resting ones are asked: no server is
// asked twice in one Next.
func (t *Tickets) Next(ctx context.Context) (int64, error) {
	n := len(t.servers)
	if n == 0 {
		return 0, fmt.Errorf("%w: none configured", ErrNoServer)
	}
	first := int(t.next.Add(1) % uint64(n))
	var errs []error
	// try asks s: done when it answered or the caller gave up.
	try := func(s *server) (id int64, done bool, err error) {
		id, err = t.ask(ctx, s)
		switch {
		case err == nil:
			return id, true, nil
		case ctx.Err() != nil:
			return 0, true, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
		return 0, false, nil
	}
	// Whether a server rests is read once: in two passes that each read
	// it, one that failed in the first would be asked again in the second,
	// and one whose rest ended in between would be skipped by both.
	var resting []*server
	for i := range n {
		s := t.servers[(first+i)%n]
		if !s.take(t.o.Timeout, t.o.Rest) {
			resting = append(resting, s)
			continue
		}
		if id, done, err := try(s); done {
			return id, err
		}
	}
	for _, s := range resting {
		if id, done, err := try(s); done {
			return id, err
		}
	}
	return 0, fmt.Errorf("%w: %w", ErrNoServer, errors.Join(errs...))
}

func (t *Tickets) ask(ctx context.Context, s *server) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	var id int64
	err := s.DB.WithContext(qctx).Raw(`SELECT nextval('` + Sequence + `')`).Scan(&id).Error
	if err == nil && id == 0 {
		err = errors.New("no id returned")
	}
	if err != nil && ctx.Err() != nil {
		// The caller gave up (its client went away), not the server:
		// resting it would send every other caller elsewhere for Rest.
		return 0, err
	}
	if err != nil {
		s.failed.Add(1)
		s.mu.Lock()
		s.downUntil = time.Now().Add(t.o.Rest)
		s.mu.Unlock()
		return 0, err
	}
	s.issued.Add(1)
	s.mu.Lock()
	s.downUntil = time.Time{}
	s.mu.Unlock()
	return id, nil
}

// take says whether s may be asked before the resting servers: it answered
// last time, or its rest is over, and then this caller is its probe. Until
// the probe ends s stays resting, so that the Next calls that come
// meanwhile skip it instead of each waiting on a server that may still
// hang: an answer ends the rest, a failure starts a new one, and a probe
// whose caller gives up counts as a failure (the rest lasts its timeout
// and Rest, as if it had failed).
func (s *server) take(timeout, rest time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.downUntil.IsZero() {
		return true
	}
	now := time.Now()
	if now.Before(s.downUntil) {
		return false
	}
	s.downUntil = now.Add(timeout + rest)
	return true
}

func (s *server) resting(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Before(s.downUntil)
}

// Stats reports each server's counts.
func (t *Tickets) Stats() []Stats {
	now := time.Now()
	var list []Stats
	for _, s := range t.servers {
		list = append(list, Stats{Name: s.Name, Issued: s.issued.Load(), Failed: s.failed.Load(), Down: s.resting(now)})
	}
	return list
}

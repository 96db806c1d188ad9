package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"flickrkillr/app/obs"
	"flickrkillr/app/topology"
	"flickrkillr/models"
	"flickrkillr/models/shards"
	"flickrkillr/models/tickets"
)

// Stage 10: Flickr's federation. Stage 9's topology, and the users' data
// on N shards (PostgreSQL clusters of their own, SHARD_URLS): a user's
// photos, the tags, comments and favorites on them live on the user's
// shard; the ring (DATABASE_URL) says where each user lives and whose each
// photo is; two ticket servers (the ring, odd ids, and shard 0, even)
// give ids unique across shards. The photo store and the accounts are the
// stage's (package shards: a store per shard behind the ring); every
// other stage's hooks wrap them as before.
func init() {
	register(Stage{
		Number:   federationStage,
		Name:     "federation",
		Summary:  "users' data on N shards, a ring that says where each user lives, ids from two ticket servers",
		Note:     "**Buys:** the writes spread over N primaries, where stage 9 had one. **Shows:** where the primary's host bounds stage 9's writes (the scale model, a shard host each): a write-heavy mix rises with the shards; the browse mix stays where stage 9 had it, paying a fan-out for the pages that span users (docs/stages/10-federation.md).",
		Schema:   5, // migrations/00005_federation.sql, on the ring and on every shard
		Topology: true,
		Serve:    serveFederation,
		Photos:   federatedPhotos,
		Accounts: federatedAccounts,
		Flags:    shardFlags(),
		Commands: []Command{{Name: "shard", Summary: "stage 10: move a user to another shard; repair favorites; the shards' counts", Run: cmdShard}},
		Parts:    []any{topologyPart(shardsTopology), modelServers(shardServers), metricsPart(federationMetrics), sweepEnvPart(shardsSweepEnv)},
		Panels:   federationPanels,
	})
}

const federationStage = 10

// shardSettings are the stage's own settings.
type shardSettings struct {
	Count int      // --shards, SHARDS: how many of SHARD_URLS to use (default: all)
	URLs  []string // SHARD_URLS: the shards' PostgreSQL, in shard order
}

var shardConfig = &setting[shardSettings]{"stage 10"}

func shardFlags() []Flag {
	return []Flag{
		intFlag(shardConfig, func(s *shardSettings) *int { return &s.Count }, "shards", "SHARDS",
			func() int { return 0 }, 0, 16, "shards", "stage 10: the shards to use, the first N of SHARD_URLS (0: all; env SHARDS)", "serve"),
		{
			Name: "shard-urls",
			env: func(c *Config) error {
				var urls []string
				if v := os.Getenv("SHARD_URLS"); v != "" {
					urls = strings.Split(v, ",")
				}
				shardConfig.set(c, func(s *shardSettings) { s.URLs = urls })
				return nil
			},
			validate: func(c Config) error {
				if c.Stage < federationStage {
					return nil
				}
				_, err := shardURLs(c)
				return err
			},
		},
	}
}

// shardURLs are the shards stage 10 uses.
func shardURLs(c Config) ([]string, error) {
	s := shardConfig.of(c)
	if len(s.URLs) == 0 {
		return nil, &ConfigError{"SHARD_URLS", "stage 10 keeps the users' data on shards: name them (comma-separated postgres:// URLs), or make and seed two project-local ones with `make seed SHARDS=2`, then `make serve STAGE=10`"}
	}
	for _, u := range s.URLs {
		if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
			return nil, &ConfigError{"SHARD_URLS", "is not a comma-separated list of postgres:// URLs"}
		}
	}
	n := s.Count
	if n == 0 {
		n = len(s.URLs)
	}
	if n > len(s.URLs) {
		return nil, &ConfigError{"SHARDS", fmt.Sprintf("asks for %d shards and SHARD_URLS names %d", n, len(s.URLs))}
	}
	if n < len(s.URLs) {
		return nil, &ConfigError{"SHARDS", fmt.Sprintf("asks for %d shards and SHARD_URLS names %d: the ring places users on all of them (move them off a shard before leaving it out)", n, len(s.URLs))}
	}
	return s.URLs[:n], nil
}

// serveFederation is stage 9's supervisor with the shards in the
// instances' environment (shardsTopology).
func serveFederation(ctx context.Context, cfg Config, log *slog.Logger) error {
	return serveReplicas(ctx, cfg, log)
}

// shardsTopology gives the instances and workers the shards.
func shardsTopology(cfg Config, o *topology.Options) {
	urls, _ := shardURLs(cfg) // validated
	env := []string{"SHARD_URLS=" + strings.Join(urls, ",")}
	if instanceEnv := o.Env; instanceEnv != nil {
		o.Env = func(name, addr, admin, redisURL string) []string {
			return append(instanceEnv(name, addr, admin, redisURL), env...)
		}
	}
	if workerEnv := o.WorkerEnv; workerEnv != nil {
		o.WorkerEnv = func(name, admin, redisURL string) []string {
			return append(workerEnv(name, admin, redisURL), env...)
		}
	}
	o.Attrs = append(o.Attrs, "shards", len(urls))
}

// shardsSweepEnv is the stage's data in a sweep: the ring (RING_URL) and
// the shards (SHARD_URLS) the same seed made (`make seed SHARDS=2`;
// `make loadtest-sweep` passes them), with no standbys of the ring: the
// shards are this stage's scale-out, measured against stage 9's standbys
// on the same hosts' budget.
func shardsSweepEnv() ([]string, error) {
	ring, shards := os.Getenv("RING_URL"), os.Getenv("SHARD_URLS")
	if ring == "" || shards == "" {
		return nil, &ConfigError{"RING_URL", "stage 10 is measured on a ring and its shards: `make seed SHARDS=2`, then give RING_URL=$(scripts/pg.sh ring) SHARD_URLS=$(scripts/pg.sh shards 2) (`make loadtest-sweep` does), or sweep --stages 0-9"}
	}
	return []string{"DATABASE_URL=" + ring, "SHARD_URLS=" + shards, "REPLICAS=0"}, nil
}

// shardServers are the shards' PostgreSQL, each a database host of the
// scale model of its own (db-shard0, …).
func shardServers(cfg Config) []modelServer {
	urls, _ := shardURLs(cfg)
	var list []modelServer
	for i, u := range urls {
		list = append(list, modelServer{Name: fmt.Sprintf("db-shard%d", i), Variable: "SHARD_URLS", URL: u})
	}
	return list
}

var theFederation = &resource[*shards.Federation]{"stage 10's federation"}

// shardPool is an instance's most connections to one shard.
const shardPool = 24

// federation is the process's one Federation: a pool per shard, checked
// at the stage's schema, and the two ticket servers; its repair of
// favorites runs until the Deps close.
func federation(d *Deps, ring *gorm.DB, lookups models.Lookups, states bool) (*shards.Federation, error) {
	return theFederation.get(d, func() (*shards.Federation, error) {
		urls, err := shardURLs(d.Config)
		if err != nil {
			return nil, err
		}
		ctx, stop := context.WithCancel(context.Background())
		var handles []shards.Handle
		for i, u := range urls {
			count := &shards.QueryCount{}
			db, err := models.Open(ctx, u, models.Options{MaxOpenConns: min(models.PoolSize(d.DB), shardPool), StatementTimeout: requestTimeout, Tracer: count})
			if err != nil {
				stop()
				return nil, fmt.Errorf("app: shard %d: %w", i, err)
			}
			d.OnClose(func() error { models.Close(db); return nil })
			if err := CheckSchema(ctx, db, d.Config.Stage, d.Config.Indexes); err != nil {
				stop()
				return nil, fmt.Errorf("app: shard %d: %w", i, err)
			}
			handles = append(handles, shards.Handle{DB: db, Queries: count})
		}
		// The ticket servers: the ring's PostgreSQL itself (not the stores'
		// handle, which stage 9 may route) for the odd ids, shard 0 for the even.
		ids := tickets.New([]tickets.Server{{Name: "ring (odd)", DB: d.DB}, {Name: "shard-0 (even)", DB: handles[0].DB}}, tickets.Options{})
		f := shards.New(ring, handles, ids, shards.Options{Lookups: lookups, States: states, Log: d.Log.Warn})
		go f.KeepRepairing(ctx, 30*time.Second, func(n int, err error) {
			if err != nil {
				d.Log.Warn("stage 10: favorites' repair", "applied", n, "err", err)
				return
			}
			d.Log.Info("stage 10: favorites repaired from the outbox", "applied", n)
		})
		d.OnClose(func() error { stop(); return nil })
		return f, nil
	})
}

// federatedPhotos is the stage's photo store: the shards behind the ring.
func federatedPhotos(d *Deps, db *gorm.DB, lookups models.Lookups, states bool) (models.Gallery, error) {
	return federation(d, db, lookups, states)
}

// federatedAccounts is the stage's users' store: the ring's accounts, a
// new user's row on every shard.
func federatedAccounts(d *Deps, db *gorm.DB) (Accounts, error) {
	return federation(d, db, models.Sequential{}, false)
}

// cmdShard is `flickrkillr shard move USER --to K`, `shard repair` and
// `shard status`.
func cmdShard(ctx context.Context, args []string, log *slog.Logger) error {
	const usage = "usage: flickrkillr shard move USER --to K | shard repair | shard status (DATABASE_URL: the ring; SHARD_URLS: the shards)"
	if len(args) == 0 {
		return &UsageError{Msg: usage}
	}
	op, args := args[0], args[1:]
	cfg, fs, err := CommandConfig("shard", "db", "data")
	if err != nil {
		return err
	}
	to := fs.Int("to", -1, "move: the shard to move the user to (0 to N-1)")
	var who string
	if op == "move" && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		who, args = args[0], args[1:]
	}
	if err := ParseFlags(fs, args); err != nil {
		return err
	}
	cfg.Stage = federationStage
	if err := cfg.Validate("db", "data"); err != nil {
		return err
	}
	db, err := models.Open(ctx, cfg.DatabaseURL, models.Options{MaxOpenConns: 4})
	if err != nil {
		return err
	}
	d := &Deps{Config: *cfg, DB: db, Log: log}
	defer d.Close()
	d.OnClose(func() error { models.Close(db); return nil })
	f, err := federation(d, db, models.Sequential{}, true)
	if err != nil {
		return err
	}
	switch op {
	case "move":
		if who == "" || *to < 0 {
			return &UsageError{Msg: "shard move takes a user (name or id) and --to K: " + usage}
		}
		r, err := f.MoveByName(ctx, who, *to, func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) })
		if err != nil {
			return err
		}
		if r.NoOp {
			fmt.Printf("user %d is on shard %d already: nothing to move\n", r.User, r.To)
			return nil
		}
		fmt.Printf("moved user %d from shard %d to %d: %d photos, %d rows in all; copy %s, writes held %s, grace %s, clean-up %s\n",
			r.User, r.From, r.To, r.Photos, r.Rows(), r.Copy.Round(time.Millisecond), r.Hold.Round(time.Millisecond), r.Grace.Round(time.Millisecond), r.Cleanup.Round(time.Millisecond))
		if r.Photos > 0 {
			fmt.Printf("time per photo (copy and switch): %s\n", ((r.Copy + r.Hold) / time.Duration(r.Photos)).Round(time.Microsecond))
		}
		return nil
	case "repair":
		n, err := f.Repair(ctx, 0)
		fmt.Printf("favorites repaired from the outbox: %d\n", n)
		return err
	case "status":
		for i, s := range f.Shards() {
			var users, photos int64
			_ = f.Ring().WithContext(ctx).Raw(`SELECT count(*) FROM ring_users WHERE shard = ?`, i).Scan(&users).Error
			if err := s.DB.WithContext(ctx).Raw(`SELECT count(*) FROM photos`).Scan(&photos).Error; err != nil {
				fmt.Printf("shard %d: down (%v)\n", i, err)
				continue
			}
			fmt.Printf("shard %d: %d users live here, %d photos\n", i, users, photos)
		}
		return nil
	}
	return &UsageError{Msg: usage}
}

// The stage's metrics, exported by each instance.
var (
	shardStatementsDesc = prometheus.NewDesc("flickrkillr_shard_statements_total", "Stage 10: statements sent to each shard.", []string{"shard"}, nil)
	shardRowsDesc       = prometheus.NewDesc("flickrkillr_shard_rows_total", "Stage 10: rows each shard returned or changed.", []string{"shard"}, nil)
	ringLookupsDesc     = prometheus.NewDesc("flickrkillr_ring_lookups_total", "Stage 10: where a user's shard or a photo's owner came from: the process (hit) or the ring (miss).", []string{"result"}, nil)
	shardPagesDesc      = prometheus.NewDesc("flickrkillr_shard_pages_total", "Stage 10: photo and user pages answered by one shard, or asked of every shard.", []string{"shards"}, nil)
	shardFanoutsDesc    = prometheus.NewDesc("flickrkillr_shard_fanouts_total", "Stage 10: reads asked of every shard (home, tags, a photo the ring did not know).", nil, nil)
	shardHoldsDesc      = prometheus.NewDesc("flickrkillr_shard_held_writes_total", "Stage 10: writes that waited for a move's switch.", nil, nil)
	favoriteSidesDesc   = prometheus.NewDesc("flickrkillr_favorite_outbox_total", "Stage 10: faver's sides of favorites written from the outbox (applied), across two shards (cross), left to the repair (left).", []string{"kind"}, nil)
	ticketsDesc         = prometheus.NewDesc("flickrkillr_tickets_total", "Stage 10: ids issued and failed by each ticket server.", []string{"server", "result"}, nil)
)

type federationCollector struct{ f *shards.Federation }

func (c federationCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c federationCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.f.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, s := range st.Shards {
		counter(shardStatementsDesc, s.Statements, s.Name)
		counter(shardRowsDesc, s.Rows, s.Name)
	}
	counter(ringLookupsDesc, st.RingHits, "hit")
	counter(ringLookupsDesc, st.RingMisses, "miss")
	counter(shardPagesDesc, st.PagesOne, "one")
	counter(shardPagesDesc, st.PagesSpread, "every")
	counter(shardFanoutsDesc, st.Fanouts)
	counter(shardHoldsDesc, st.HoldWaits)
	counter(favoriteSidesDesc, st.OutboxApplied, "applied")
	counter(favoriteSidesDesc, st.CrossShardFavorites, "cross")
	counter(favoriteSidesDesc, st.OutboxLeft, "left")
	for _, t := range st.Tickets {
		counter(ticketsDesc, t.Issued, t.Name, "issued")
		counter(ticketsDesc, t.Failed, t.Name, "failed")
	}
}

// federationMetrics registers the shards' counts in an instance's metrics.
func federationMetrics(d *Deps, reg prometheus.Registerer) error {
	f, err := theFederation.get(d, func() (*shards.Federation, error) { return nil, errors.New("no federation was made") })
	if err != nil {
		return err
	}
	return reg.Register(federationCollector{f})
}

// federationPanels: statements and rows per shard, the ring's hit ratio,
// the pages answered by one shard, the favorites' two sides.
func federationPanels(*obs.Metrics) []obs.Panel {
	perShard := func(name string, i int) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 { return s.Rate(name, obs.Label("shard", "shard-"+strconv.Itoa(i))) }
	}
	var stmts, rows []obs.Series
	for i := range 4 {
		stmts = append(stmts, obs.Series{Label: "shard-" + strconv.Itoa(i), Value: perShard("flickrkillr_shard_statements_total", i)})
		rows = append(rows, obs.Series{Label: "shard-" + strconv.Itoa(i), Value: perShard("flickrkillr_shard_rows_total", i)})
	}
	ratio := func(name, label, yes string) func(s *obs.Sample) float64 {
		return func(s *obs.Sample) float64 {
			hit := s.Rate(name, obs.Label(label, yes))
			return 100 * obs.Per(hit, s.Rate(name, nil))
		}
	}
	return []obs.Panel{
		{ID: "shardstatements", Title: "Statements per shard", Unit: "statements/s", Note: "each shard's primary: the writes spread with the users", Series: stmts},
		{ID: "shardrows", Title: "Rows per shard", Unit: "rows/s", Series: rows},
		{ID: "shardring", Title: "The ring", Unit: "%, per s", Note: "lookups answered by the process (the rest ask the ring); photo and user pages answered by one shard", Series: []obs.Series{
			{Label: "ring hit %", Value: ratio("flickrkillr_ring_lookups_total", "result", "hit")},
			{Label: "one-shard pages %", Value: ratio("flickrkillr_shard_pages_total", "shards", "one")},
			{Label: "fan-outs/s", Value: func(s *obs.Sample) float64 { return s.Rate("flickrkillr_shard_fanouts_total", nil) }},
			{Label: "held writes/s", Value: func(s *obs.Sample) float64 { return s.Rate("flickrkillr_shard_held_writes_total", nil) }},
		}},
	}
}

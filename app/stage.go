package app

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"

	"flickrkillr/models"
)

// Stage is one step of the scaling ladder. Stages are cumulative: running
// stage N applies stages 0..N in order, and each hook a stage sets replaces
// the choice an earlier stage made for that one part. Handlers never see the
// stage; they see the parts.
//
// Each stage lives in its own file (stage0_cgi.go, stage1_db_sessions.go, …)
// and registers itself, so that a workshop tag can drop a later stage's file
// and still compile: see docs/maintaining-stages.md.
type Stage struct {
	Number  int
	Name    string
	Summary string

	// Schema is the migration version the stage needs; 0 keeps the earlier one.
	Schema int64
	// Indexes marks the stage whose Schema adds the indexes the hot queries
	// need (stage 4). Earlier stages can run on that schema on purpose
	// (--indexes, the "each step alone" ladder); a build without such a
	// stage (an early workshop tag) cannot. In a resolved stage it says
	// whether the schema it runs on has those indexes.
	Indexes bool
	// Topology marks a stage that runs as several processes (stage 7: nginx,
	// instances and a redis-server): it is served when asked for by number,
	// never by default, so `make run` keeps needing nothing but PostgreSQL.
	Topology bool
	// Serve runs the server: stage 0 as CGI, stage 1 on as one long-running process.
	Serve func(ctx context.Context, cfg Config, log *slog.Logger) error
	// Sessions makes the scs session store.
	Sessions func(d *Deps) (scs.Store, error)
	// SessionRefresh, when set, writes a session only when it changes (a
	// log-in, a log-out, a flash) and moves its expiry forward at most this
	// often (stage 3). Unset, an idle timeout rewrites the session on every
	// request that carries one: the per-request write stages 1 and 2 measure.
	SessionRefresh time.Duration
	// Gallery wraps (or replaces) the photo reads and writes.
	Gallery func(d *Deps, inner models.Gallery) (models.Gallery, error)
	// Images wraps (or replaces) where image bytes come from.
	Images func(d *Deps, inner ImageSource) (ImageSource, error)
	// Views keeps (or not) the parts of pages that every viewer shares.
	Views func(d *Deps) (ViewCache, error)
	// Lookups runs a page's independent lookups (models.Sequential unless a
	// stage sets it), and sizes what they share for it.
	Lookups func(d *Deps) (models.Lookups, error)
	// Uploads makes a checked upload into a photo: nil makes its images in
	// the request; stage 6 hands them to a worker pool. A stage that sets it
	// runs on a schema where photos have a state (processing, ready, failed).
	Uploads func(a *App, d *Deps) (Uploads, error)
	// Front says what stands in front of the app (stage 7: nginx): whose
	// word to take for the client's address, and where pages link images.
	Front func(cfg Config) Front
	// Throttles makes the log-in and sign-up throttles (per account name,
	// per client address): nil counts in the process's memory; stage 7
	// counts in the Redis its instances share.
	// FrontPages is where the front server finds whole public pages
	// (stage 8: memcached, read by nginx): nil keeps none.
	// It returns the gallery wrapped so that its writes delete the pages
	// they change.
	FrontPages func(a *App, d *Deps, gallery models.Gallery) (FrontPages, models.Gallery, error)
	Throttles  func(d *Deps) (names, addrs failureThrottle, err error)
}

var stages = map[int]Stage{}

// register is called by each stage file's init: a registration, nothing opened.
func register(s Stage) {
	if _, dup := stages[s.Number]; dup {
		panic(fmt.Sprintf("app: stage %d registered twice", s.Number))
	}
	stages[s.Number] = s
}

// LookupStage returns the stage with number n, if this build has it.
func LookupStage(n int) (Stage, bool) {
	s, ok := stages[n]
	return s, ok
}

// DefaultStage is the stage `serve` runs when none is asked for: the highest
// one that runs as one process (with an embedded miniredis, no nginx).
func DefaultStage() int {
	max := -1
	for n, s := range stages {
		if n > max && !s.Topology {
			max = n
		}
	}
	return max
}

// HighestStage is the highest stage this build has (the sweep's last).
func HighestStage() int {
	highest := -1
	for n := range stages {
		highest = max(highest, n)
	}
	return highest
}

// Stages lists the stages of this build in order.
func Stages() []Stage {
	var list []Stage
	for _, s := range stages {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Number < list[j].Number })
	return list
}

// StageList is "0-4" style text for help and error messages.
func StageList() string {
	var names []string
	for _, s := range Stages() {
		names = append(names, fmt.Sprintf("%d=%s", s.Number, s.Name))
	}
	return strings.Join(names, ", ")
}

// resolve folds stages 0..n into the one Stage that runs: the last hook set
// wins (overrideHooks), the last Schema set, Indexes once any stage sets it.
func resolve(n int) (Stage, error) {
	if _, ok := stages[n]; !ok {
		return Stage{}, &ConfigError{"STAGE", fmt.Sprintf("%d is not a stage of this build (stages: %s)", n, StageList())}
	}
	var r Stage
	for _, s := range Stages() {
		if s.Number > n {
			break
		}
		r.Number, r.Name, r.Summary = s.Number, s.Name, s.Summary
		if s.Schema != 0 {
			r.Schema = s.Schema
		}
		r.Indexes = r.Indexes || s.Indexes
		overrideHooks(&r, s)
		if s.SessionRefresh != 0 { // a duration, not a hook
			r.SessionRefresh = s.SessionRefresh
		}
	}
	return r, nil
}

// overrideHooks sets in r every hook (a func field of Stage) that s sets: a
// new hook is a new field, with nothing to add here.
func overrideHooks(r *Stage, s Stage) {
	rv, sv := reflect.ValueOf(r).Elem(), reflect.ValueOf(s)
	for i := range sv.NumField() {
		if f := sv.Field(i); f.Kind() == reflect.Func && !f.IsNil() {
			rv.Field(i).Set(f)
		}
	}
}

// resolveRun is resolve for a configuration: with cfg.Indexes, the stage's
// code runs on the index schema (never below its own schema: a later stage
// that adds a migration keeps it).
func resolveRun(cfg Config) (Stage, error) {
	s, err := resolve(cfg.Stage)
	if err != nil || !cfg.Indexes || s.Indexes {
		return s, err
	}
	idx, err := IndexSchema()
	if err != nil {
		return Stage{}, err
	}
	s.Schema, s.Indexes = max(s.Schema, idx), true
	return s, nil
}

// IndexSchema is the migration version that adds the hot queries' indexes:
// the Schema of the stage registered with Indexes. A build without that
// stage (the workshop tags of stages 0-3) has no index schema: a ConfigError.
func IndexSchema() (int64, error) {
	for _, s := range Stages() {
		if s.Indexes {
			return s.Schema, nil
		}
	}
	return 0, &ConfigError{"INDEXES", fmt.Sprintf("this build has no index migration (stages: %s); the workshop tags before stage 4 run only on their own schema: use main for --indexes", StageList())}
}

// HasIndexSchema reports whether this build can run a stage on the index
// schema (--indexes).
func HasIndexSchema() bool {
	_, err := IndexSchema()
	return err == nil
}

// SchemaFor is the migration version stage n needs on its own.
func SchemaFor(n int) (int64, error) {
	s, err := resolve(n)
	if err != nil {
		return 0, err
	}
	return s.Schema, nil
}

// SchemaForRun is the migration version stage n runs on: its own, or with
// indexes the index schema.
func SchemaForRun(n int, indexes bool) (int64, error) {
	s, err := resolveRun(Config{Stage: n, Indexes: indexes})
	if err != nil {
		return 0, err
	}
	return s.Schema, nil
}

// SchemaHasIndexes reports whether stage n on its own schema already has
// the hot queries' indexes (stage 4 and later): then --indexes changes nothing.
func SchemaHasIndexes(n int) bool {
	s, err := resolve(n)
	return err == nil && s.Indexes
}

// Serve runs the server of cfg.Stage until ctx is cancelled.
func Serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := resolveRun(cfg)
	if err != nil {
		return err
	}
	model, err := startModel(cfg, log) // --model: hosts for the database and Redis (model.go)
	if err != nil {
		return err
	}
	defer model.close()
	cfg, stop, err := acrossNetwork(cfg, log) // --db-latency: a simulation
	if err != nil {
		return err
	}
	defer stop()
	if err := model.join(&cfg); err != nil { // this process into the app host, its proxy left out
		return err
	}
	return s.Serve(ctx, cfg, log)
}

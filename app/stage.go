package app

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"flickrkillr/models"
)

// Stage is one step of the scaling ladder, and the only thing a stage's file
// registers: what the stage is, what it brings (flags, panels, subcommands,
// parts for mechanisms an earlier stage owns, its note for the sweep) and
// its hooks. Stages are cumulative: running stage N applies stages 0..N in
// order (resolve). Handlers never see the stage; they see the parts.
//
// Each stage lives in its own file (stage0_cgi.go, stage1_db_sessions.go, …)
// and registers itself, so that a workshop tag can drop a later stage's file
// and still compile: see docs/maintaining-stages.md, which lists every field
// below in its hook table (TestEveryStageFieldIsDocumented).
//
// Two kinds of hooks. A wrapper (Database, Gallery, Images) receives what
// the stages before it built and returns it wrapped: stage 3's cache wraps
// the photo store, stage 8's page deletion wraps stage 3's cache, and a
// stage that routes reads wraps the database handle under both. A maker
// (Serve, Sessions, Views, Lookups, Uploads, Front, Throttles, FrontPages,
// Requests)
// makes the one part it names; the last stage up to the one running that
// sets it decides, because the new part replaces the old one (Redis
// sessions do not wrap PostgreSQL's).
type Stage struct {
	Number  int
	Name    string
	Summary string
	// Note is what the step buys and where it shows on each ladder: the
	// sweep's report prints it with the step (the stage doc says why).
	Note string

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
	// Pool is how many database connections the stage's pages may hold at
	// once (stage 5's fan-out); the pool of a stage is the largest Pool of
	// the stages it runs, and never below models.Open's.
	Pool int

	// Flags are the stage's variables and flags, each with the commands
	// that take it: a build without the stage neither reads nor offers them.
	Flags []Flag
	// Panels are the stage's dashboard panels, shown at it and after it.
	Panels PanelsFunc
	// Commands are the subcommands the stage brings (stage 6: worker, queue).
	Commands []Command
	// Parts are what the stage adds to a mechanism that an earlier stage
	// owns, each a value of a type that stage declares and collects with
	// partsOf (stage 7's topologyPart: stage 8 adds memcached to the
	// topology; stage 3's cacheOption: stage 5 tunes the cache).
	Parts []any

	// Serve runs the server: stage 0 as CGI, stage 1 on as one long-running process.
	Serve func(ctx context.Context, cfg Config, log *slog.Logger) error
	// Sessions makes the scs session store.
	Sessions func(d *Deps) (scs.Store, error)
	// SessionRefresh, when set, writes a session only when it changes (a
	// log-in, a log-out, a flash) and moves its expiry forward at most this
	// often (stage 3). Unset, an idle timeout rewrites the session on every
	// request that carries one: the per-request write stages 1 and 2 measure.
	SessionRefresh time.Duration
	// Database wraps the database handle the stores are built on, before
	// any store exists (the bottom hook: a stage that routes reads to
	// replicas). Sessions (stages 0-1), migrations and the health checks
	// keep the handle the process opened.
	Database Wrap[*gorm.DB]
	// Photos makes the photo store the Gallery hooks wrap, on the stores'
	// handle (stage 10: a store per shard behind the ring); nil: the one
	// PostgreSQL store. states: photos have a state (stage 6).
	Photos func(d *Deps, db *gorm.DB, lookups models.Lookups, states bool) (models.Gallery, error)
	// Accounts makes the users' store (sign-up, sign-in) on the stores'
	// handle (stage 10: the ring's accounts, a new user's row on every
	// shard); nil: the one PostgreSQL store.
	Accounts func(d *Deps, db *gorm.DB) (Accounts, error)
	// Gallery wraps the photo reads and writes (stage 3's cache, stage 8's
	// page deletion), in an instance and in a worker process alike.
	Gallery Wrap[models.Gallery]
	// Images wraps where image bytes come from.
	Images Wrap[ImageSource]
	// Views makes what keeps the parts of pages that every viewer shares.
	Views func(d *Deps) (ViewCache, error)
	// Lookups makes what runs a page's independent lookups (models.Sequential
	// unless a stage sets it).
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
	Throttles func(d *Deps) (names, addrs failureThrottle, err error)
	// FrontPages makes where the front server finds whole public pages
	// (stage 8: memcached, read by nginx): nil keeps none. The stage's
	// Gallery hook deletes the pages a write changes.
	FrontPages func(a *App, d *Deps) (FrontPages, error)
	// Requests makes a middleware that every page which loads a session
	// runs right after loading it, around the handler (stage 9: a user who
	// wrote reads their write on the next page): nil runs none.
	Requests func(a *App, d *Deps) (echo.MiddlewareFunc, error)

	steps []Stage // in a resolved Stage: the stages it folds, 0..Number
}

// Wrap is a wrapper hook: it gets what the stages before it built (inner)
// and returns what the stages after it get.
type Wrap[T any] func(d *Deps, inner T) (T, error)

// wrap applies the wrapper hook that field picks from each stage s runs, in
// stage order, to v.
func wrap[T any](s Stage, d *Deps, v T, field func(Stage) Wrap[T]) (T, error) {
	for _, st := range s.steps {
		if hook := field(st); hook != nil {
			var err error
			if v, err = hook(d, v); err != nil {
				return v, fmt.Errorf("stage %d: %w", st.Number, err)
			}
		}
	}
	return v, nil
}

// partsOf collects the parts of type T that the stages s runs add, in
// stage order.
func partsOf[T any](s Stage) []T {
	var parts []T
	for _, st := range s.steps {
		for _, p := range st.Parts {
			if v, ok := p.(T); ok {
				parts = append(parts, v)
			}
		}
	}
	return parts
}

// Command is a subcommand a stage brings: `flickrkillr NAME`.
type Command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, args []string, log *slog.Logger) error
}

var stages = map[int]Stage{}

// register is called by each stage file's init: a registration, nothing
// opened. A flag or command name another stage has is a programming error.
func register(s Stage) {
	if _, dup := stages[s.Number]; dup {
		panic(fmt.Sprintf("app: stage %d registered twice", s.Number))
	}
	for _, f := range s.Flags {
		if _, dup := lookupFlag(f.Name); dup || coreFlag(f.Name) {
			panic("app: flag " + f.Name + " registered twice")
		}
	}
	for _, c := range s.Commands {
		if _, dup := LookupCommand(c.Name); dup {
			panic("app: command " + c.Name + " registered twice")
		}
	}
	stages[s.Number] = s
}

// Commands lists the subcommands the stages of this build bring, in stage order.
func Commands() []Command { return fromStages(func(s Stage) []Command { return s.Commands }) }

// fromStages gathers what pick gives of every stage of this build (its
// flags, its commands), in stage order.
func fromStages[T any](pick func(Stage) []T) []T {
	var list []T
	for _, s := range Stages() {
		list = append(list, pick(s)...)
	}
	return list
}

// LookupCommand finds a stage's subcommand by name.
func LookupCommand(name string) (Command, bool) {
	for _, c := range Commands() {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
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

// resolve folds stages 0..n into the one Stage that runs: stage n's name,
// note and own hooks; the last Schema set, Indexes once any stage sets it,
// the largest Pool; each maker of the last stage that sets it; and the
// stages themselves (steps), from which wrap applies the wrappers and
// partsOf collects the parts, in stage order.
func resolve(n int) (Stage, error) {
	top, ok := stages[n]
	if !ok {
		return Stage{}, &ConfigError{"STAGE", fmt.Sprintf("%d is not a stage of this build (stages: %s)", n, StageList())}
	}
	r := top
	for _, s := range Stages() {
		if s.Number > n {
			break
		}
		r.steps = append(r.steps, s)
		if s.Schema != 0 {
			r.Schema = s.Schema
		}
		r.Indexes = r.Indexes || s.Indexes
		r.Pool = max(r.Pool, s.Pool)
		if s.SessionRefresh != 0 {
			r.SessionRefresh = s.SessionRefresh
		}
		// The makers: the last stage that sets one decides.
		if s.Serve != nil {
			r.Serve = s.Serve
		}
		if s.Sessions != nil {
			r.Sessions = s.Sessions
		}
		if s.Photos != nil {
			r.Photos = s.Photos
		}
		if s.Accounts != nil {
			r.Accounts = s.Accounts
		}
		if s.Views != nil {
			r.Views = s.Views
		}
		if s.Lookups != nil {
			r.Lookups = s.Lookups
		}
		if s.Uploads != nil {
			r.Uploads = s.Uploads
		}
		if s.Front != nil {
			r.Front = s.Front
		}
		if s.Throttles != nil {
			r.Throttles = s.Throttles
		}
		if s.FrontPages != nil {
			r.FrontPages = s.FrontPages
		}
		if s.Requests != nil {
			r.Requests = s.Requests
		}
	}
	return r, nil
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

// sweepEnvPart is a Part: what a stage's migrate and serve get on top of
// the sweep's environment (stage 10: DATABASE_URL the ring, and the
// shards), or an error that says how to make it.
type sweepEnvPart func() ([]string, error)

// SweepEnv is what `loadtest sweep` gives stage n's migrate and serve on
// top of its own environment.
func SweepEnv(n int) ([]string, error) {
	s, err := resolve(n)
	if err != nil {
		return nil, err
	}
	var env []string
	for _, part := range partsOf[sweepEnvPart](s) {
		e, err := part()
		if err != nil {
			return nil, err
		}
		env = append(env, e...)
	}
	return env, nil
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

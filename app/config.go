package app

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"time"

	"flickrkillr/app/scalemodel"
)

// Config is everything the app is told from outside: the environment first,
// then flags, which override it.
type Config struct {
	DatabaseURL string // DATABASE_URL: a postgres:// URL
	RedisURL    string // REDIS_URL: a redis:// URL; empty starts an embedded miniredis
	// REDIS_CACHE_URL: the Redis of stage 3's cache, apart from the durable
	// one of sessions, throttles and the queue (a cache evicts, a queue must
	// not); empty: the cache shares REDIS_URL's (or the embedded miniredis).
	RedisCacheURL string
	DataDir       string // DATA_DIR: where photo files live
	Addr          string // ADDR: where serve listens
	Stage         int    // STAGE: which scaling stage to run (default: the highest this build has)
	// INDEXES=1: run the stage's code on the schema with stage 4's indexes
	// (the "each step alone" ladder) instead of its own schema.
	Indexes bool
	// DATABASE_POOLER=transaction: DATABASE_URL names a transaction-pooling
	// PgBouncer (stage 7's instances): queries in pgx's exec mode, and the
	// statement_timeout is the role's, not a startup parameter (models.Options.Pooler).
	DBPooler bool
	// WATCHDOG_DATABASE_URL: PostgreSQL itself, for the watchdog's probe
	// when DATABASE_URL names a pooler that would queue it (stage 7 hands
	// its instances the direct URL); empty: DATABASE_URL.
	WatchdogURL string
	// DBLatency (DB_LATENCY) is a simulation: PostgreSQL and Redis are reached
	// through a proxy that delays every byte this long each way (package netdelay, db_latency.go).
	DBLatency time.Duration
	// DRAIN_DELAY: on shutdown, how long /readyz answers 503 while the server
	// still serves, so that a load balancer stops sending before it closes.
	DrainDelay time.Duration
	AdminAddr  string // ADMIN_ADDR: the operator listener (dashboard, metrics, pprof); empty: none
	NoMetrics  bool   // METRICS=0: no per-request instrumentation (metrics, Server-Timing), to measure its cost
	// settings are the stages' own settings (setting[T]: stage 6's
	// workers, stage 7's instances, …), declared in each stage's file and
	// read and set through its Flags: a build without the stage has
	// neither the type nor the value, and this struct names none of them.
	settings map[any]any

	// MODEL (--model): the scale model's spec (app/model.go); model is the
	// running one, which serve hands the operator listener.
	Model string
	model *scalemodel.Model

	cgiChild bool // Stage 0: this process answers one request; its parent keeps the metrics
}

// ConfigError names the variable or flag that is wrong; main prints it as one
// line and exits 2.
type ConfigError struct {
	Name string
	Msg  string
}

func (e *ConfigError) Error() string { return e.Name + ": " + e.Msg }

// ConfigFromEnv reads the environment.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		DatabaseURL:   os.Getenv("DATABASE_URL"),
		RedisURL:      os.Getenv("REDIS_URL"),
		RedisCacheURL: os.Getenv("REDIS_CACHE_URL"),
		DataDir:       envOr("DATA_DIR", "data/photos"),
		Addr:          envOr("ADDR", "127.0.0.1:8080"),
		Stage:         DefaultStage(),
		AdminAddr:     "127.0.0.1:6060",
	}
	if v, ok := os.LookupEnv("ADMIN_ADDR"); ok {
		cfg.AdminAddr = v
	}
	cfg.WatchdogURL = os.Getenv("WATCHDOG_DATABASE_URL")
	for _, err := range []error{
		envValue("METRICS", strconv.ParseBool, "%q is not a boolean (1 or 0)", func(on bool) { cfg.NoMetrics = !on }),
		envValue("STAGE", strconv.Atoi, "%q is not a number (stages: "+StageList()+")", func(n int) { cfg.Stage = n }),
		envValue("INDEXES", strconv.ParseBool, "%q is not 1 or 0", func(b bool) { cfg.Indexes = b }),
		envValue("DB_LATENCY", time.ParseDuration, "%q is not a duration (like 1ms)", func(d time.Duration) { cfg.DBLatency = d }),
		envValue("DATABASE_POOLER", poolerMode, "%q is not a pooler mode (transaction, or empty for none)", func(on bool) { cfg.DBPooler = on }),
		envValue("DRAIN_DELAY", nonNegative, "%q is not a duration such as 5s", func(d time.Duration) { cfg.DrainDelay = d }),
	} {
		if err != nil {
			return cfg, err
		}
	}
	cfg.Model = os.Getenv("MODEL")
	for _, f := range flagsOfStages() {
		if err := f.env(&cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// envValue parses the variable name, when it is set, and hands the value to
// set; a bad value is a ConfigError whose message is bad with the value.
func envValue[T any](name string, parse func(string) (T, error), bad string, set func(T)) error {
	s := os.Getenv(name)
	if s == "" {
		return nil
	}
	v, err := parse(s)
	if err != nil {
		return &ConfigError{name, fmt.Sprintf(bad, s)}
	}
	set(v)
	return nil
}

// poolerMode reads DATABASE_POOLER: only transaction pooling is known.
func poolerMode(s string) (bool, error) {
	if s != "transaction" {
		return false, errors.New("unknown pooler mode")
	}
	return true, nil
}

// nonNegative is time.ParseDuration refusing a negative duration.
func nonNegative(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err == nil && d < 0 {
		err = fmt.Errorf("negative duration %s", d)
	}
	return d, err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Flags registers the flags a subcommand accepts on fs; each overrides its
// variable. which names the fields: "db", "redis", "data", "addr", "stage",
// "indexes", "latency", "drain", "admin" (the operator listener and metrics),
// "model" (the scale model), or a stage's own (StageFlags: "workers" of
// stage 6, "instances" of stage 7), which a build without that stage ignores.
func (c *Config) Flags(fs *flag.FlagSet, which ...string) {
	for _, w := range which {
		switch w {
		case "db":
			fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "PostgreSQL URL (env DATABASE_URL)")
		case "redis":
			fs.StringVar(&c.RedisURL, "redis-url", c.RedisURL, "Redis URL; empty runs an embedded miniredis (env REDIS_URL)")
			fs.StringVar(&c.RedisCacheURL, "redis-cache-url", c.RedisCacheURL, "the cache's own Redis URL (stage 3+); empty: the cache shares --redis-url's (env REDIS_CACHE_URL)")
		case "data":
			fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of photo files (env DATA_DIR)")
		case "addr":
			fs.StringVar(&c.Addr, "addr", c.Addr, "listen address (env ADDR)")
		case "drain":
			fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "on shutdown, answer /readyz 503 this long before closing (env DRAIN_DELAY)")
		case "stage":
			fs.IntVar(&c.Stage, "stage", c.Stage, "scaling stage "+StageList()+" (env STAGE)")
		case "indexes":
			fs.BoolVar(&c.Indexes, "indexes", c.Indexes, "run the stage on the schema with stage 4's indexes, to measure its step alone (env INDEXES=1)")
		case "latency":
			fs.DurationVar(&c.DBLatency, "db-latency", c.DBLatency, "SIMULATION: reach PostgreSQL and Redis through an in-process proxy that delays\nevery byte this long each way, as a network this far away would (e.g. 1ms; env DB_LATENCY)")
		case "admin":
			fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "operator listener: /dashboard, /metrics, /debug/pprof/; empty disables it (env ADMIN_ADDR)")
			fs.BoolFunc("metrics", "per-request metrics and Server-Timing, on by default; --metrics=false measures without them (env METRICS)", func(s string) error {
				on, err := strconv.ParseBool(s)
				c.NoMetrics = !on
				return err
			})
		case "model":
			fs.StringVar(&c.Model, "model", c.Model, "run as a scale model: each role a host with a CPU quota (default, or e.g.\napp=0.15,db=0.6,period=20ms; needs root; docs/scale-model.md; env MODEL)")
		default:
			if sf, ok := lookupFlag(w); ok {
				sf.flag(c, fs)
			}
		}
	}
}

// Validate checks the fields the named subcommand needs and names the first
// bad one.
func (c Config) Validate(which ...string) error {
	for _, w := range which {
		switch w {
		case "db":
			if c.DatabaseURL == "" {
				return &ConfigError{"DATABASE_URL", "is not set (a postgres:// URL; `make run` starts a local PostgreSQL and sets it)"}
			}
			u, err := url.Parse(c.DatabaseURL)
			if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				return &ConfigError{"DATABASE_URL", "must be a postgres:// URL"}
			}
		case "redis":
			for _, v := range []struct{ name, url string }{{"REDIS_URL", c.RedisURL}, {"REDIS_CACHE_URL", c.RedisCacheURL}} {
				if v.url == "" {
					continue
				}
				u, err := url.Parse(v.url)
				if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
					return &ConfigError{v.name, "must be a redis:// URL, or empty (REDIS_URL: the embedded miniredis; REDIS_CACHE_URL: REDIS_URL's)"}
				}
			}
		case "data":
			if c.DataDir == "" {
				return &ConfigError{"DATA_DIR", "is empty (a directory for photo files)"}
			}
		case "addr":
			if _, _, err := net.SplitHostPort(c.Addr); err != nil {
				return &ConfigError{"ADDR", fmt.Sprintf("%q is not host:port", c.Addr)}
			}
		case "admin":
			if _, _, err := net.SplitHostPort(c.AdminAddr); c.AdminAddr != "" && err != nil {
				return &ConfigError{"ADMIN_ADDR", fmt.Sprintf("%q is not host:port (empty disables the operator listener)", c.AdminAddr)}
			}
		case "stage":
			if _, ok := LookupStage(c.Stage); !ok {
				return &ConfigError{"STAGE", fmt.Sprintf("%d is not a stage of this build (stages: %s)", c.Stage, StageList())}
			}
		case "indexes":
			if c.Indexes {
				if _, err := IndexSchema(); err != nil {
					return err
				}
			}
		case "latency":
			if c.DBLatency < 0 || c.DBLatency > 10*time.Second {
				return &ConfigError{"DB_LATENCY", fmt.Sprintf("%s is out of range (0 to 10s; 1ms is a database in the next rack)", c.DBLatency)}
			}
		case "model":
			if _, err := modelSpec(c); err != nil {
				return err
			}
		default:
			if sf, ok := lookupFlag(w); ok {
				if err := sf.validate(c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// setting is a stage's own settings, of type T, under a handle its file
// declares (var scaleOut = &setting[scaleOutSettings]{"stage 7"}); a Config
// carries them.
type setting[T any] struct{ name string }

// of is cfg's value of the setting: T's zero value where nothing set it.
func (s *setting[T]) of(cfg Config) T {
	v, _ := cfg.settings[s].(T)
	return v
}

// set changes cfg's value of the setting. The values are kept by value and
// the map is copied first: a Config is a value, and a copy made before
// keeps what it had.
func (s *setting[T]) set(cfg *Config, change func(*T)) {
	v := s.of(*cfg)
	change(&v)
	m := maps.Clone(cfg.settings)
	if m == nil {
		m = map[any]any{}
	}
	m[s] = v
	cfg.settings = m
}

// settingValue is a flag whose value is a stage's setting in a Config:
// Set parses into it, String shows it (--help's default).
type settingValue struct {
	get     func() string
	set     func(string) error
	boolean bool
}

func (v settingValue) String() string {
	if v.get == nil { // the zero value flag.PrintDefaults compares with
		return ""
	}
	return v.get()
}
func (v settingValue) Set(s string) error { return v.set(s) }
func (v settingValue) IsBoolFlag() bool   { return v.boolean }

// Flag is a variable and flag that a stage brings (Stage.Flags): a build
// without the stage (an early workshop tag) neither reads the variable nor
// offers the flag. Name is the flag's name and its key in Flags and
// Validate; Commands are the subcommands that take it (StageFlags).
type Flag struct {
	Name     string
	Commands []string
	env      func(c *Config) error
	flag     func(c *Config, fs *flag.FlagSet)
	validate func(c Config) error
}

// coreFlags are the keys of Flags and Validate that every build has; a
// stage's flag must not take one.
var coreFlags = []string{"db", "redis", "data", "addr", "drain", "stage", "indexes", "latency", "admin", "model"}

func coreFlag(name string) bool { return slices.Contains(coreFlags, name) }

// durationFlag is a stage's duration, a field of its setting s: NAME in
// the environment and --name, which Validate keeps within lo..hi when set
// (zero: the stage's default).
func durationFlag[T any](s *setting[T], field func(*T) *time.Duration, name, env string, lo, hi time.Duration, usage string, commands ...string) Flag {
	put := func(c *Config, d time.Duration) { s.set(c, func(v *T) { *field(v) = d }) }
	const bad = "%q is not a duration (like 500ms)"
	return Flag{
		Name:     name,
		Commands: commands,
		env: func(c *Config) error {
			return envValue(env, time.ParseDuration, bad, func(d time.Duration) { put(c, d) })
		},
		flag: func(c *Config, fs *flag.FlagSet) {
			fs.Func(name, usage+" (env "+env+")", func(text string) error {
				d, err := time.ParseDuration(text)
				if err != nil {
					return fmt.Errorf(bad, text)
				}
				put(c, d)
				return nil
			})
		},
		validate: func(c Config) error {
			v := s.of(c)
			if d := *field(&v); d != 0 && (d < lo || d > hi) {
				return &ConfigError{env, fmt.Sprintf("%s is out of range (%s to %s)", d, lo, hi)}
			}
			return nil
		},
	}
}

// intFlag is a stage's number, a field of its setting s: NAME in the
// environment and --name (both default to def()), which Validate keeps
// within lo..hi; what names its unit in the messages ("workers").
func intFlag[T any](s *setting[T], field func(*T) *int, name, env string, def func() int, lo, hi int, what, usage string, commands ...string) Flag {
	get := func(c Config) int { v := s.of(c); return *field(&v) }
	put := func(c *Config, n int) { s.set(c, func(v *T) { *field(v) = n }) }
	return Flag{
		Name:     name,
		Commands: commands,
		env: func(c *Config) error {
			put(c, def())
			return envValue(env, strconv.Atoi, "%q is not a number of "+what, func(n int) { put(c, n) })
		},
		flag: func(c *Config, fs *flag.FlagSet) {
			fs.Var(settingValue{
				get: func() string { return strconv.Itoa(get(*c)) },
				set: func(text string) error {
					n, err := strconv.Atoi(text)
					if err != nil {
						return errors.New("not a number")
					}
					put(c, n)
					return nil
				},
			}, name, usage)
		},
		validate: func(c Config) error {
			if n := get(c); n < lo || n > hi {
				return &ConfigError{env, fmt.Sprintf("%d is out of range (%d to %d)", n, lo, hi)}
			}
			return nil
		},
	}
}

// flagsOfStages are the flags of every stage of this build, in stage order.
func flagsOfStages() []Flag { return fromStages(func(s Stage) []Flag { return s.Flags }) }

func lookupFlag(name string) (Flag, bool) {
	for _, f := range flagsOfStages() {
		if f.Name == name {
			return f, true
		}
	}
	return Flag{}, false
}

// StageFlags names the stages' flags that command takes in this build, for
// Flags and Validate: serve takes --workers only where stage 6 is, and
// --instances only where stage 7 is.
func StageFlags(command string) []string {
	var names []string
	for _, f := range flagsOfStages() {
		if slices.Contains(f.Commands, command) {
			names = append(names, f.Name)
		}
	}
	return names
}

// IsConfigError reports whether err is a configuration mistake.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// UsageError is a bad flag or argument of a command: exit status 2, like a
// ConfigError.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// IsUsageError reports whether err is a bad flag or argument.
func IsUsageError(err error) bool {
	var ue *UsageError
	return errors.As(err, &ue)
}

// ParseFlags parses a command's args into fs; a flag error is a UsageError.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &UsageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// CommandConfig reads the environment and registers the flags named by
// which (Config.Flags) on a new FlagSet for the command name; parsing
// fills the returned Config. Every command, main's and the stages', starts
// with it.
func CommandConfig(name string, which ...string) (*Config, *flag.FlagSet, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, nil, err
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfg.Flags(fs, which...)
	return &cfg, fs, nil
}

package app

import (
	"log/slog"

	"flickrkillr/app/netdelay"
)

// A database across the network, on purpose (--db-latency, DB_LATENCY): a
// simulation that package netdelay runs; here the app puts it in front of
// PostgreSQL and Redis.

// acrossNetwork starts the delay proxy in front of PostgreSQL when
// cfg.DBLatency is set and returns the configuration that dials it; stop
// closes it. Redis gets its own proxy where its client is made (Deps.Redis),
// so that the embedded miniredis is as far away as a real Redis.
func acrossNetwork(cfg Config, log *slog.Logger) (Config, func(), error) {
	if cfg.DBLatency <= 0 {
		return cfg, func() {}, nil
	}
	network, target, rewrite, err := netdelay.PGTarget(cfg.DatabaseURL)
	if err != nil {
		return cfg, nil, &ConfigError{"DB_LATENCY", err.Error()}
	}
	addr, stop, err := netdelay.Spawn(network, target, cfg.DBLatency)
	if err != nil {
		return cfg, nil, err
	}
	cfg.DatabaseURL = rewrite(addr)
	log.Info("simulation: PostgreSQL and Redis are reached through a delay proxy",
		"db_latency", cfg.DBLatency.String(), "round_trip_adds", (2 * cfg.DBLatency).String(), "postgres_proxy", addr)
	return cfg, func() { stop() }, nil
}

// overNetwork puts the delay proxy in front of a Redis address when the
// configuration asks for it. The caller makes its client once (Deps.Shared),
// so there is one proxy per process; Close stops it.
func (d *Deps) overNetwork(addr string) (string, error) {
	if d.Config.DBLatency <= 0 {
		return addr, nil
	}
	proxy, stop, err := netdelay.Spawn("tcp", addr, d.Config.DBLatency)
	if err != nil {
		return "", err
	}
	d.OnClose(stop)
	return proxy, nil
}

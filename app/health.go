package app

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/labstack/echo/v4"

	"flickrkillr/app/obs"
	"flickrkillr/models"
)

type health struct {
	Status    string `json:"status"`
	Stage     int    `json:"stage"`
	StageName string `json:"stage_name"`
	// Indexes says whether the schema has the hot queries' indexes: stage 4
	// and later on their own, stages 0-3 only with --indexes.
	Indexes  bool   `json:"indexes"`
	PID      int    `json:"pid"`
	Database string `json:"database"`
	// Rows are estimated table sizes (pg_class.reltuples), with ?data=1:
	// the load tool records them next to its figures.
	Rows map[string]int64 `json:"rows,omitempty"`
	// Process is the server's memory, file descriptors and goroutines, with
	// ?data=1: the connections scenario compares them (obs/process.go).
	Process *obs.ProcessStats `json:"process,omitempty"`
}

// healthz answers whether this process can reach its database. Its pid is
// how a test (and a workshop attendee) sees stage 0 start a process per request.
func (a *App) healthz(c echo.Context) error {
	h := health{Status: "ok", Stage: a.stage.Number, StageName: a.stage.Name, Indexes: a.stage.Indexes, PID: os.Getpid(), Database: "ok"}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if why := a.postgresOpen(); why != "" {
		h.Status, h.Database = "degraded", "unreachable ("+why+")"
		return c.JSON(http.StatusServiceUnavailable, h)
	}
	if err := models.Ping(ctx, a.db); err != nil {
		a.log.Error("healthz: database", "err", err)
		h.Status, h.Database = "degraded", "unreachable"
		return c.JSON(http.StatusServiceUnavailable, h)
	}
	if c.QueryParam("data") == "1" {
		rows, err := models.EstimateRows(ctx, a.db)
		if err != nil {
			return err
		}
		h.Rows = rows
		h.Process = obs.ReadProcessStats()
	}
	return c.JSON(http.StatusOK, h)
}

// Drain marks the server as shutting down: /readyz answers 503 from now on
// (runServer calls it before it stops accepting connections).
func (a *App) Drain() { a.lim.draining.Store(true) }

// readyz answers whether this instance should get traffic: 503 while it is
// draining or while its database does not answer within a second. /healthz
// says whether the process is alive and what it runs; /readyz is what a load
// balancer asks.
func (a *App) readyz(c echo.Context) error {
	type ready struct {
		Status   string `json:"status"`
		Database string `json:"database"`
		// Reason says why the database counts as unreachable: the
		// breaker's cause (no progress, refused), or a ping's timeout.
		Reason string `json:"reason,omitempty"`
	}
	if a.lim.draining.Load() {
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, ready{Status: "draining", Database: "unknown"})
	}
	if why := a.postgresOpen(); why != "" { // at once: the breaker already knows
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, ready{Status: "unavailable", Database: "unreachable", Reason: why})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), time.Second)
	defer cancel()
	if err := models.Ping(ctx, a.db); err != nil {
		c.Response().Header().Set("Retry-After", "5")
		return c.JSON(http.StatusServiceUnavailable, ready{Status: "unavailable", Database: "unreachable", Reason: "no answer to a ping within 1 s"})
	}
	return c.JSON(http.StatusOK, ready{Status: "ready", Database: "ok"})
}

// postgresOpen says why PostgreSQL's breaker is open, or "" while it is
// closed (or there is none).
func (a *App) postgresOpen() string {
	if a.pg == nil {
		return ""
	}
	if err := a.pg.breaker.Cause(); err != nil {
		return "circuit breaker open: " + err.Error()
	}
	if a.pg.breaker.Open() {
		return "circuit breaker open"
	}
	return ""
}

package replicas

import "time"

// Stats are the Router's counters and the replicas' state, as plain
// numbers: models/ does not import app/obs; the stage that wires the
// Router in exports them (a collector reading Stats on scrape).
type Stats struct {
	Primary  DBStats
	Replicas []ReplicaStats
	// FreshnessReads went to the primary because no replica in the
	// rotation had replayed the position the request needed (or the
	// request had written).
	FreshnessReads int64
	// NoReplicaReads went to the primary because no replica was in the
	// rotation.
	NoReplicaReads int64
	ForcedReads    int64 // marked OnPrimary
	// Fallbacks failed on a replica (connection, timeout, recovery
	// conflict) and were run again on the primary.
	Fallbacks int64
	// PositionReads asked the primary its WAL position (PrimaryLSN): at
	// most once per write of a tracked request.
	PositionReads int64
	MaxLag        time.Duration // the setting: the most a reader without a position sees a write late
}

// DBStats are the statements one database served.
type DBStats struct {
	Name          string
	Reads, Writes int64
}

// ReplicaStats is one replica as the poller last saw it.
type ReplicaStats struct {
	DBStats
	InRotation bool
	ReplayLSN  string
	LagBytes   int64
	LagSeconds float64
	Errors     int64 // reads that failed on it
	Left       int64 // times it left the rotation
	LastError  string
}

// Stats reads the counters.
func (r *Router) Stats() Stats {
	s := Stats{
		Primary:        DBStats{Name: "primary", Reads: r.primaryReads.Load(), Writes: r.primaryWrites.Load()},
		FreshnessReads: r.freshness.Load(),
		NoReplicaReads: r.noReplica.Load(),
		ForcedReads:    r.forced.Load(),
		Fallbacks:      r.fallbacks.Load(),
		PositionReads:  r.positionReads.Load(),
		MaxLag:         r.o.MaxLag,
	}
	for _, rep := range r.replicas {
		rep.mu.Lock()
		rs := ReplicaStats{
			DBStats:    DBStats{Name: rep.name, Reads: rep.reads.Load()},
			InRotation: rep.in.Load(),
			ReplayLSN:  LSN(rep.pos.Load()).String(),
			LagBytes:   rep.lagBytes,
			LagSeconds: rep.lagSeconds,
			Errors:     rep.errors.Load(),
			Left:       rep.left.Load(),
			LastError:  rep.lastErr,
		}
		rep.mu.Unlock()
		s.Replicas = append(s.Replicas, rs)
	}
	return s
}

// Package scalemodel makes "hosts" on one machine: each role of the
// datacenter the stages retell (an app instance, the database, Redis, the
// front, a worker) runs in a CPU cgroup with a quota of its own, so a step
// that moves work to another machine or relieves a bottleneck other than this
// box's CPU shows what it buys (issue 33, docs/scale-model.md). It knows
// nothing of the app: plain options in, plain errors out.
package scalemodel

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Role is what a host does in the modelled datacenter.
type Role string

// The roles a spec sizes. Every host of a role gets the same quota: only the
// number of hosts changes with the stage (one spec for the whole sweep).
const (
	RoleApp    Role = "app"
	RoleDB     Role = "db"
	RoleRedis  Role = "redis"
	RoleFront  Role = "front"
	RoleWorker Role = "worker"
)

// Roles lists every role in the order a spec prints them.
var Roles = []Role{RoleApp, RoleDB, RoleRedis, RoleFront, RoleWorker}

// Spec sizes the hosts: CPUs per host of each role, and the CFS period the
// quotas are enforced over.
type Spec struct {
	Quotas map[Role]float64
	Period time.Duration
}

// The default sizes (`--model default`). They are proportions, not a guess at
// 2007 hardware: the hand-made prototype of 7 Dec (shared/model-prototype.md,
// stage 7 on the logged-in mix) spent about 2.1 ms of app CPU and 1.4 ms of
// database CPU (PostgreSQL with PgBouncer) per request, a database-to-app
// ratio of about 0.67. Its database host at 0.4 CPU became the bottleneck of
// stage 7 (four 0.15 app hosts), so stage 8 could not show. The story needs
// the app hosts to bound stages 6-8 with the database left room:
//
//   - app 0.15: four of them (stage 7) are 0.6 CPU; at 0.67 database CPU per
//     app CPU they ask the database for ~0.40 CPU.
//   - db 0.6 = 4 app hosts × 0.15: 1.5× the database CPU four saturated app
//     hosts need, the room stage 8's front cache (≥ 1.5× on the anonymous
//     mix) must have before the database bounds again. Early stages (table
//     scans, sessions in the database) cost the database far more than the
//     app per request, so the database still bounds them.
//   - redis 0.15: one command costs microseconds; the prototype's 0.15 was
//     never near its quota.
//   - front 0.25: nginx (and memcached at stage 8) serves stage 8's hits for
//     the four app hosts; it must not bound before they do.
//   - worker 0.15: a worker host is sized like an app host (the same binary
//     making thumbnails instead of pages).
//   - period 20 ms: measured (docs/scale-model.md, scripts/model-period.sh):
//     a throttled host stalls for at most (1 - quota) × period, 17 ms at 0.15
//     instead of 85 ms with the kernel's 100 ms default, without the cost of
//     10 ms periods' more frequent throttling.
//
// Stage 8's total is 4 × 0.15 + 0.6 + 0.15 + 0.25 = 1.6 CPU of this
// machine's 2, leaving the load tool (outside the model) 0.4 CPU.
var defaultQuotas = map[Role]float64{
	RoleApp:    0.15,
	RoleDB:     0.6,
	RoleRedis:  0.15,
	RoleFront:  0.25,
	RoleWorker: 0.15,
}

// DefaultPeriod is the CFS period of the default spec (see above).
const DefaultPeriod = 20 * time.Millisecond

// Limits of CFS bandwidth control (kernel/sched/core.c): a period from 1 ms
// to 1 s, a quota of at least 1 ms per period.
const (
	minPeriod = time.Millisecond
	maxPeriod = time.Second
	minSlice  = time.Millisecond
)

// DefaultSpec returns the named default sizes.
func DefaultSpec() Spec {
	q := make(map[Role]float64, len(defaultQuotas))
	for r, v := range defaultQuotas {
		q[r] = v
	}
	return Spec{Quotas: q, Period: DefaultPeriod}
}

// ParseSpec reads `--model SPEC`: "default", or comma-separated key=value
// pairs over the default (app=0.25,db=1.0,redis=0.2,front=0.3,worker=0.2,
// period=20ms); a key left out keeps its default size. "default," may lead
// the list. The result is validated.
func ParseSpec(text string) (Spec, error) {
	s := DefaultSpec()
	text = strings.TrimSpace(text)
	if text == "" {
		return Spec{}, fmt.Errorf("scalemodel: empty spec: want \"default\" or role=CPUs pairs such as app=0.15,db=0.6,period=20ms")
	}
	for i, part := range strings.Split(text, ",") {
		part = strings.TrimSpace(part)
		if part == "default" && i == 0 {
			continue
		}
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return Spec{}, fmt.Errorf("scalemodel: spec item %q: want key=value (keys: %s, period)", part, roleList())
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key == "period" {
			d, err := time.ParseDuration(val)
			if err != nil {
				return Spec{}, fmt.Errorf("scalemodel: spec period %q: want a duration such as 20ms", val)
			}
			s.Period = d
			continue
		}
		if _, known := defaultQuotas[Role(key)]; !known {
			return Spec{}, fmt.Errorf("scalemodel: spec key %q: want one of %s, period", key, roleList())
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return Spec{}, fmt.Errorf("scalemodel: spec %s=%q: want CPUs as a number such as 0.15", key, val)
		}
		s.Quotas[Role(key)] = f
	}
	return s, s.Validate()
}

// Validate names the first size the kernel cannot enforce or the machine
// cannot give.
func (s Spec) Validate() error {
	if s.Period < minPeriod || s.Period > maxPeriod {
		return fmt.Errorf("scalemodel: spec period %v: CFS takes %v to %v", s.Period, minPeriod, maxPeriod)
	}
	ncpu := float64(runtime.NumCPU())
	for _, r := range Roles {
		q, ok := s.Quotas[r]
		if !ok {
			return fmt.Errorf("scalemodel: spec has no size for role %s", r)
		}
		if q <= 0 || q != q {
			return fmt.Errorf("scalemodel: spec %s=%v: a host needs more than 0 CPU", r, q)
		}
		if q > ncpu {
			return fmt.Errorf("scalemodel: spec %s=%v: more CPU than this machine's %d", r, q, runtime.NumCPU())
		}
		if slice := time.Duration(q * float64(s.Period)); slice < minSlice {
			return fmt.Errorf("scalemodel: spec %s=%v: %v per %v period is under CFS's 1ms minimum; raise it or the period", r, q, slice, s.Period)
		}
	}
	return nil
}

// Quota returns the CPUs of a host of role r.
func (s Spec) Quota(r Role) float64 { return s.Quotas[r] }

// Procs is the GOMAXPROCS of a Go process on a host of role r (Host.Procs),
// for a process started with it in its environment before it is placed.
func (s Spec) Procs(r Role) int { return procsFor(s.Quotas[r]) }

// String prints the spec in the form ParseSpec reads, every key spelled out.
func (s Spec) String() string {
	parts := make([]string, 0, len(Roles)+1)
	for _, r := range Roles {
		parts = append(parts, fmt.Sprintf("%s=%s", r, strconv.FormatFloat(s.Quotas[r], 'f', -1, 64)))
	}
	return strings.Join(append(parts, "period="+s.Period.String()), ",")
}

func roleList() string {
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

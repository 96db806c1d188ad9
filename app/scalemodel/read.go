package scalemodel

import (
	"path/filepath"
	"strings"
)

// Counters is one host's cumulative counters as another process reads them
// from the cgroup files (the sweep reads the hosts of the serve it started:
// the model lives in that process, its groups are on the machine for anyone
// to read). Role comes from the host's name (app-2 is an app host).
type Counters struct {
	Name     string
	Role     Role
	Usage    int64 // CPU time used since the host was made, ns
	Throttle Throttle
}

// ReadHosts reads every host under a model's prefix (its Options.Prefix):
// none when no model with that prefix runs. A host removed while it is read
// is left out.
func ReadHosts(prefix string) ([]Counters, error) {
	lay, err := detect("/proc/mounts")
	if err != nil {
		return nil, err
	}
	var out []Counters
	for _, rel := range lay.children(prefix) {
		if filepath.Dir(rel) != prefix {
			continue
		}
		u, err := lay.usage(rel)
		if err != nil {
			continue
		}
		t, err := lay.throttle(rel)
		if err != nil {
			continue
		}
		name := filepath.Base(rel)
		role, _, _ := strings.Cut(name, "-")
		out = append(out, Counters{Name: name, Role: Role(role), Usage: int64(u), Throttle: t})
	}
	return out, nil
}

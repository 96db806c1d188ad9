package topology

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"flickrkillr/app/obs"
)

// The operator view of the topology. The supervisor's listener (AdminAddr)
// shows the processes it runs (/topology) and a dashboard whose metrics are
// every instance's /metrics (each instance has an operator listener of its
// own on a free loopback port), labelled instance="iN" and summed by the
// panels; /metrics serves them all. An instance's counters start again from
// zero when it restarts: that second's rates are skipped.

// startAdmin runs the supervisor's operator listener until stop is called.
func (t *topology) startAdmin(ctx context.Context) (stop func()) {
	if t.o.AdminAddr == "" {
		return func() {}
	}
	g := &instanceGatherer{t: t, client: &http.Client{Timeout: 900 * time.Millisecond}}
	o := obs.Operator{Addr: t.o.AdminAddr, Log: t.log, Metrics: g, Info: t.o.Info, Pages: map[string]http.Handler{
		"GET /topology": http.HandlerFunc(t.topologyPage),
		"GET /topology.json": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			json.NewEncoder(w).Encode(t.view())
		}),
	}}
	if len(t.o.Panels) > 0 {
		o.Panels = append(append([]obs.Panel(nil), t.o.Panels...), t.instancePanels()...)
		if t.pgbouncer != nil {
			o.Panels = append(o.Panels, pgbouncerPanels()...)
		}
		if t.redisURL != "" {
			o.Panels = append(o.Panels, redisPanels()...)
		}
	}
	stop = obs.StartOperator(ctx, o)
	t.log.Info("the topology's operator view", "topology", "http://"+t.o.AdminAddr+"/topology")
	return stop
}

// instancePanels are the supervisor's per-instance panels (it knows their names).
func (t *topology) instancePanels() []obs.Panel {
	var rps, cpu []obs.Series
	for _, in := range t.instances {
		f := obs.Label("instance", in.Name)
		rps = append(rps, obs.Series{Label: in.Name, Value: func(s *obs.Sample) float64 { return s.Rate("http_requests_total", f) }})
		cpu = append(cpu, obs.Series{Label: in.Name, Value: func(s *obs.Sample) float64 { return s.Rate("process_cpu_seconds_total", f) }})
	}
	for _, w := range t.workers { // the image-worker processes: CPU, no requests
		f := obs.Label("instance", w.Name)
		cpu = append(cpu, obs.Series{Label: w.Name, Value: func(s *obs.Sample) float64 { return s.Rate("process_cpu_seconds_total", f) }})
	}
	return []obs.Panel{
		{ID: "byinstance", Title: "Requests per second, by instance", Unit: "req/s", Note: "nginx's least_conn spreads them", Series: rps},
		{ID: "cpubyinstance", Title: "CPU, by instance", Unit: "cores", Series: cpu},
	}
}

// topologyView is /topology.json.
type topologyView struct {
	Addr      string         `json:"addr"`
	Started   time.Time      `json:"started"`
	Redis     string         `json:"redis"`
	Dir       string         `json:"dir"`
	Redises   []redisRole    `json:"redis_roles"`
	Processes []topologyProc `json:"processes"`
	Hosts     any            `json:"hosts,omitempty"` // the scale model's (Options.Hosts)
}

type topologyProc struct {
	procStatus
	Role  string `json:"role"`
	Addr  string `json:"addr,omitempty"`
	Admin string `json:"admin,omitempty"`
}

func (t *topology) view() topologyView {
	v := topologyView{Addr: t.o.Addr, Started: t.started, Redis: t.redisURL, Dir: t.dir, Redises: t.redisRoles()}
	if t.o.Hosts != nil {
		v.Hosts = t.o.Hosts()
	}
	v.Processes = append(v.Processes, topologyProc{procStatus: t.nginx.status(), Role: "front", Addr: t.o.Addr})
	for _, in := range t.instances {
		role := "app instance"
		if in.proc == nil {
			role = "remote app instance"
		}
		v.Processes = append(v.Processes, topologyProc{procStatus: in.state(), Role: role, Addr: in.Addr, Admin: in.Admin})
	}
	for _, w := range t.workers {
		v.Processes = append(v.Processes, topologyProc{procStatus: w.state(), Role: "image worker", Admin: w.Admin})
	}
	if t.pgbouncer != nil {
		v.Processes = append(v.Processes, topologyProc{procStatus: t.pgbouncer.status(), Role: "PostgreSQL pooler", Addr: t.pgbouncer.Addr})
	}
	for _, b := range t.replicaPoolers {
		v.Processes = append(v.Processes, topologyProc{procStatus: b.status(), Role: "standby pooler", Addr: b.Addr})
	}
	for _, sv := range t.services {
		role := sv.Role
		if sv.Status != nil && sv.status().Up {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			role += ": " + sv.Status(ctx)
			cancel()
		}
		v.Processes = append(v.Processes, topologyProc{procStatus: sv.status(), Role: role, Addr: sv.Addr})
	}
	if t.redis != nil {
		v.Processes = append(v.Processes, topologyProc{procStatus: t.redis.status(), Role: durableRedis.role, Addr: t.redisURL})
	}
	if t.cacheRedis != nil {
		v.Processes = append(v.Processes, topologyProc{procStatus: t.cacheRedis.status(), Role: cacheRedis.role, Addr: t.cacheRedisURL})
	}
	if t.memcached != nil {
		v.Processes = append(v.Processes, topologyProc{procStatus: t.memcached.status(), Role: "front cache (memcached)", Addr: t.memcachedAddr})
	}
	return v
}

var topologyTmpl = template.Must(template.New("topology").Funcs(template.FuncMap{
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"mb":  func(b float64) string { return fmt.Sprintf("%.1f MB", b/(1<<20)) },
	"pct": func(r float64) float64 { return 100 * r },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Topology · FlickrKillr</title></head>
<body>
<h1>Stage 7 topology</h1>
<p>nginx on <a href="http://{{.Addr}}/">{{.Addr}}</a>, started {{ago .Started}} ago; Redis {{.Redis}};
generated files in <code>{{.Dir}}</code>. <a href="/dashboard">Dashboard</a> (the instances' metrics, summed).
SIGHUP to the supervisor restarts the instances one at a time. This page reloads every 2 s.</p>
<table>
<thead><tr><th>process</th><th>role</th><th>address</th><th>pid</th><th>state</th><th>for</th><th>starts</th><th>restarts</th><th>last exit</th><th>operator listener</th></tr></thead>
<tbody>
{{range .Processes}}<tr><td>{{.Name}}</td><td>{{.Role}}</td><td>{{.Addr}}</td><td>{{.PID}}</td>
<td>{{if .Up}}up{{else}}<strong>down</strong>{{end}}</td><td>{{ago .Since}}</td><td>{{.Starts}}</td><td>{{.Restarts}}</td>
<td>{{.LastExit}}</td><td>{{with .Admin}}<a href="http://{{.}}/dashboard">{{.}}</a>{{end}}</td></tr>
{{end}}</tbody></table>
{{with .Redises}}<h2>Redis, by role</h2>
<table>
<thead><tr><th>name</th><th>role</th><th>URL</th><th>memory used</th><th>maxmemory</th><th>evicted keys</th><th>hit ratio</th></tr></thead>
<tbody>
{{range .}}<tr><td>{{.Name}}</td><td>{{.Role}}</td><td>{{.URL}}</td><td>{{mb .UsedMemory}}</td><td>{{if .MaxMemory}}{{mb .MaxMemory}}{{else}}none{{end}}</td>
<td>{{printf "%.0f" .Evicted}}</td><td>{{printf "%.1f%%" (pct .HitRatio)}}</td></tr>
{{end}}</tbody></table>{{end}}
</body></html>
`))

func (t *topology) topologyPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	topologyTmpl.Execute(w, t.view())
}

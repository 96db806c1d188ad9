package app

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"flickrkillr/app/obs"
)

// Stage 7: the operator view of the topology. The supervisor's listener
// (ADMIN_ADDR) shows the processes it runs (/topology) and a dashboard whose
// metrics are every instance's /metrics (each instance has an operator
// listener of its own on a free loopback port), labelled instance="iN" and
// summed by the panels; /metrics serves them all. An instance's counters
// start again from zero when it restarts: that second's rates are skipped.
func init() {
	registerPanels(scaleOutStage, func(m *obs.Metrics) []obs.Panel {
		return []obs.Panel{
			{ID: "instances", Title: "Instances", Unit: "instances, restarts", Note: "the supervisor's view (its ADMIN_ADDR); empty on an instance's own dashboard", Series: []obs.Series{
				{Label: "up", Value: func(s *obs.Sample) float64 { return s.Gauge("flickrkillr_instance_up", nil) }},
				{Label: "restarts (total)", Value: func(s *obs.Sample) float64 { return s.Gauge("flickrkillr_instance_restarts_total", nil) }},
			}},
		}
	})
}

const topologyNote = "Stage 7: the supervisor's view. Every panel sums the instances' own metrics (scraped from their operator " +
	"listeners each second); CPU and memory are the instances' only (not nginx's, Redis's or the supervisor's). /topology lists the processes."

// startAdmin runs the supervisor's operator listener until stop is called.
func (t *topology) startAdmin(ctx context.Context) (stop func()) {
	if t.cfg.AdminAddr == "" {
		return func() {}
	}
	g := &instanceGatherer{t: t, client: &http.Client{Timeout: 900 * time.Millisecond}}
	o := obs.Operator{Addr: t.cfg.AdminAddr, Log: t.log, Metrics: g, Pages: map[string]http.Handler{
		"GET /topology": http.HandlerFunc(t.topologyPage),
		"GET /topology.json": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			json.NewEncoder(w).Encode(t.view())
		}),
	}}
	if !t.cfg.NoMetrics {
		o.Panels = append(corePanels(), panelsFor(t.cfg.Stage, obs.NewMetrics(nil))...)
		o.Panels = append(o.Panels, t.instancePanels()...)
		s, _ := resolve(t.cfg.Stage)
		o.Info = dashboardInfo(s, fmt.Sprintf("migration %d expected", s.Schema), topologyNote)
	}
	stop = obs.StartOperator(ctx, o)
	t.log.Info("the topology's operator view", "topology", "http://"+t.cfg.AdminAddr+"/topology")
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
	Processes []topologyProc `json:"processes"`
}

type topologyProc struct {
	procStatus
	Role  string `json:"role"`
	Addr  string `json:"addr,omitempty"`
	Admin string `json:"admin,omitempty"`
}

func (t *topology) view() topologyView {
	v := topologyView{Addr: t.cfg.Addr, Started: t.started, Redis: t.redisURL, Dir: t.dir}
	v.Processes = append(v.Processes, topologyProc{procStatus: t.nginx.status(), Role: "front", Addr: t.cfg.Addr})
	for _, in := range t.instances {
		v.Processes = append(v.Processes, topologyProc{procStatus: in.status(), Role: "app instance", Addr: in.Addr, Admin: in.Admin})
	}
	if t.redis != nil {
		v.Processes = append(v.Processes, topologyProc{procStatus: t.redis.status(), Role: "shared Redis", Addr: t.redisURL})
	}
	return v
}

var topologyTmpl = template.Must(template.New("topology").Funcs(template.FuncMap{
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
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

// instanceGatherer is a prometheus.Gatherer over the instances: their
// /metrics, read in parallel and labelled instance="iN", and the
// supervisor's own families (up, restarts).
type instanceGatherer struct {
	t      *topology
	client *http.Client
}

func (g *instanceGatherer) Gather() ([]*dto.MetricFamily, error) {
	fams := map[string]*dto.MetricFamily{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for _, in := range g.t.instances {
		up := gauge(0)
		if in.status().Up {
			up = gauge(1)
		}
		add(fams, "flickrkillr_instance_up", "Stage 7: whether the instance's process is running.", dto.MetricType_GAUGE, in.Name, up)
		add(fams, "flickrkillr_instance_restarts_total", "Stage 7: restarts of the instance after it exited on its own.", dto.MetricType_GAUGE, in.Name,
			gauge(float64(in.status().Restarts)))
		if in.Admin == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := g.scrape(in)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			for name, f := range got {
				for _, m := range f.GetMetric() {
					m.Label = append(m.Label, &dto.LabelPair{Name: proto.String("instance"), Value: proto.String(in.Name)})
					if h := m.GetHistogram(); h != nil { // the text format's +Inf bucket is the count, implicit in-process
						var bs []*dto.Bucket
						for _, b := range h.GetBucket() {
							if !math.IsInf(b.GetUpperBound(), 1) {
								bs = append(bs, b)
							}
						}
						h.Bucket = bs
					}
				}
				if have, ok := fams[name]; ok {
					have.Metric = append(have.Metric, f.Metric...)
				} else {
					fams[name] = f
				}
			}
		}()
	}
	wg.Wait()
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, firstErr
}

func (g *instanceGatherer) scrape(in *instance) (map[string]*dto.MetricFamily, error) {
	res, err := g.client.Get("http://" + in.Admin + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", in.Name, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("instance %s: /metrics answered %d", in.Name, res.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(res.Body)
}

func gauge(v float64) *dto.Metric { return &dto.Metric{Gauge: &dto.Gauge{Value: proto.Float64(v)}} }

// add appends one instance's series to the family name, made on first use.
func add(fams map[string]*dto.MetricFamily, name, help string, typ dto.MetricType, inst string, m *dto.Metric) {
	f, ok := fams[name]
	if !ok {
		f = &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: typ.Enum()}
		fams[name] = f
	}
	m.Label = append(m.Label, &dto.LabelPair{Name: proto.String("instance"), Value: proto.String(inst)})
	f.Metric = append(f.Metric, m)
}

package topology

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

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
	for _, in := range append(g.t.instances, g.t.workers...) {
		up := gauge(0)
		if in.state().Up {
			up = gauge(1)
		}
		add(fams, "flickrkillr_instance_up", "Stage 7: whether the instance's process is running.", dto.MetricType_GAUGE, in.Name, up)
		add(fams, "flickrkillr_instance_restarts_total", "Stage 7: restarts of the instance after it exited on its own.", dto.MetricType_GAUGE, in.Name,
			gauge(float64(in.state().Restarts)))
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
	if b := g.t.pgbouncer; b != nil && b.status().Up {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := b.stats(context.Background())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("pgbouncer: %w", err)
				}
				return
			}
			for _, f := range pgbouncerFamilies {
				typ, m := dto.MetricType_GAUGE, gauge(st[f.col]*f.scale)
				if f.counter {
					typ, m = dto.MetricType_COUNTER, &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(st[f.col] * f.scale)}}
				}
				add(fams, f.name, f.help, typ, "pgbouncer", m)
			}
		}()
	}
	wg.Wait()
	if g.t.o.Metrics != nil {
		more, err := g.t.o.Metrics.Gather()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for _, f := range more {
			fams[f.GetName()] = f
		}
	}
	g.t.gatherMemcached(fams) // Stage 8
	g.t.gatherRedis(fams)
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

package app

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"flickrkillr/app/obs"
	"flickrkillr/models"
)

// registerForTest registers s for the test only.
func registerForTest(t *testing.T, s Stage) {
	t.Helper()
	register(s)
	t.Cleanup(func() { delete(stages, s.Number) })
}

// A stage is one registration. A stage N+1 registered here, in a test file
// and nowhere else, brings a flag with its variable, a dashboard panel, a
// part for a mechanism, a wrapper of the gallery and one of the database
// handle, and each takes effect: the flag is read and validated, the panel
// is on stage N+1's dashboard (and not on stage N's), the part is
// collected, and the pages run on the wrapped gallery over what the stages
// before it built, and on the wrapped database handle. (Stage 7's test file
// shows a topology part reaching the supervisor's options the same way.)
func TestOneRegistrationMakesAStage(t *testing.T) {
	top := Stages()[len(Stages())-1]
	n := top.Number + 1
	type part string
	var galleryCalls, dbQueries atomic.Int64
	var innerGallery string
	registerForTest(t, Stage{
		Number:   n,
		Name:     "test-stage",
		Summary:  "a stage a test registers",
		Note:     "**Buys:** a proof. **Shows:** in this test.",
		Topology: top.Topology, // the default stage stays what it was
		Flags: []Flag{{ // its setting is its own: Config has no field for it
			Name:     "test-knob",
			Commands: []string{"serve"},
			env: func(c *Config) error {
				testKnob.set(c, func(s *knobSettings) { s.Knob = os.Getenv("TEST_KNOB") })
				return nil
			},
			flag: func(c *Config, fs *flag.FlagSet) {
				fs.Var(settingValue{
					get: func() string { return testKnob.of(*c).Knob },
					set: func(v string) error { testKnob.set(c, func(s *knobSettings) { s.Knob = v }); return nil },
				}, "test-knob", "a test's knob")
			},
			validate: func(c Config) error {
				if testKnob.of(c).Knob == "bad" {
					return &ConfigError{"TEST_KNOB", "is bad"}
				}
				return nil
			},
		}},
		Panels: func(*obs.Metrics) []obs.Panel {
			return []obs.Panel{{ID: "testpanel", Title: "A test's panel", Series: []obs.Series{{Label: "one", Value: func(*obs.Sample) float64 { return 1 }}}}}
		},
		Parts: []any{part("added by stage N+1")},
		Database: func(d *Deps, inner *gorm.DB) (*gorm.DB, error) {
			db, err := models.Open(context.Background(), d.Config.DatabaseURL, models.Options{Tracer: queryCounter{&dbQueries}})
			if err != nil {
				return nil, err
			}
			d.OnClose(func() error { models.Close(db); return nil })
			return db, nil
		},
		Gallery: func(d *Deps, inner models.Gallery) (models.Gallery, error) {
			innerGallery = fmt.Sprintf("%T", inner)
			return keepStates(countingGallery{inner, &galleryCalls}, inner), nil
		},
	})

	// The flag: offered by serve, read from its variable and the command
	// line, validated.
	if !slices.Contains(StageFlags("serve"), "test-knob") {
		t.Fatalf("serve's stage flags %v lack the new stage's", StageFlags("serve"))
	}
	t.Setenv("TEST_KNOB", "from-env")
	cfg, fs, err := CommandConfig("serve", StageFlags("serve")...)
	if knob := testKnob.of(*cfg).Knob; err != nil || knob != "from-env" {
		t.Fatalf("TEST_KNOB not read: %q, %v", knob, err)
	}
	before := *cfg // a copy keeps its settings when the original's change
	if err := ParseFlags(fs, []string{"--test-knob=bad"}); err != nil || testKnob.of(*cfg).Knob != "bad" {
		t.Fatalf("--test-knob not parsed: %q, %v", testKnob.of(*cfg).Knob, err)
	}
	if knob := testKnob.of(before).Knob; knob != "from-env" {
		t.Fatalf("a copy of the Config saw the flag's change: %q", knob)
	}
	if err := cfg.Validate(StageFlags("serve")...); !IsConfigError(err) {
		t.Fatalf("a bad --test-knob validates: %v", err)
	}

	// The panel and the part: at stage N+1, not before.
	s, err := resolve(n)
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := resolve(top.Number)
	m := obs.NewMetrics(nil)
	if !hasPanel(panelsFor(s, m), "testpanel") || hasPanel(panelsFor(prev, m), "testpanel") {
		t.Error("the new stage's panel is not on its dashboard alone")
	}
	if got := partsOf[part](s); !reflect.DeepEqual(got, []part{"added by stage N+1"}) {
		t.Errorf("parts of stage N+1: %v", got)
	}
	if got := partsOf[part](prev); len(got) != 0 {
		t.Errorf("stage N has stage N+1's parts: %v", got)
	}

	// The wrappers: the pages read through the new gallery, which wraps
	// what the stages before it built, over the new database handle.
	ta := newTestApp(t, n)
	res := ta.browser(t).get("/")
	mustStatus(t, res, http.StatusOK)
	if galleryCalls.Load() == 0 {
		t.Error("the home page did not read through the new stage's gallery")
	}
	// A user page asks the stores' handle at every stage (from stage 10
	// on, the ring says where the user lives; the home page asks only the
	// shards).
	mustStatus(t, ta.browser(t).get("/users/nobody-by-that-name"), http.StatusNotFound)
	if dbQueries.Load() == 0 {
		t.Error("the stores did not query through the new stage's database handle")
	}
	if _, cache := LookupStage(3); cache && top.Number >= 3 && !regexp.MustCompile(`CachedGallery|forget`).MatchString(innerGallery) {
		t.Errorf("the new gallery wraps %s, not what stage 3 (and 8) built", innerGallery)
	}
	if got := ta.stage.Note; got != "**Buys:** a proof. **Shows:** in this test." {
		t.Errorf("the resolved stage's note is %q", got)
	}
}

// knobSettings are the test stage's own settings.
type knobSettings struct{ Knob string }

var testKnob = &setting[knobSettings]{"the test stage"}

// countingGallery counts the home page's reads.
type countingGallery struct {
	models.Gallery
	calls *atomic.Int64
}

func (g countingGallery) Home(ctx context.Context) (models.HomePage, error) {
	g.calls.Add(1)
	return g.Gallery.Home(ctx)
}

// keepStates gives the wrapper g what inner can do beyond models.Gallery:
// nothing before stage 6; stage 6's test file sets it to keep the photo
// states its workers finish photos through (as stage 8's forgetStates does).
var keepStates = func(g countingGallery, inner models.Gallery) models.Gallery { return g }

func hasPanel(panels []obs.Panel, id string) bool {
	return slices.ContainsFunc(panels, func(p obs.Panel) bool { return p.ID == id })
}

// docs/maintaining-stages.md's table names every field of Stage, and only
// those: a hook added without its line fails here.
func TestEveryStageFieldIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/maintaining-stages.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, row := range regexp.MustCompile("(?m)^\\| ((?:`\\w+`(?:, )?)+) \\|").FindAllStringSubmatch(string(doc), -1) {
		for _, name := range regexp.MustCompile("`(\\w+)`").FindAllStringSubmatch(row[1], -1) {
			documented[name[1]] = true
		}
	}
	typ := reflect.TypeFor[Stage]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.IsExported() && !documented[f.Name] {
			t.Errorf("Stage.%s is not in docs/maintaining-stages.md's table", f.Name)
		}
		delete(documented, typ.Field(i).Name)
	}
	for name := range documented {
		t.Errorf("docs/maintaining-stages.md's table names %s, which Stage does not have", name)
	}
}

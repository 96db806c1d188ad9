// Package app is the FlickrKillr web application: one App built in one place
// (New), its routes (routes.go), one file per resource, and the scaling
// stages, each in its own stageN_*.go file.
package app

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"flickrkillr/app/obs"
	"flickrkillr/models"
)

// App is the web application. Handlers are its methods.
type App struct {
	cfg      Config
	stage    Stage
	log      *slog.Logger
	db       *gorm.DB
	users    Accounts
	gallery  models.Gallery
	files    *models.ImageStore
	images   ImageSource
	sessions *scs.SessionManager
	// sessionRefresh: 0 rewrites every session on every request (stages
	// 1-2); from stage 3 how often an unchanged session's expiry moves.
	sessionRefresh time.Duration
	tmpl           *renderer
	views          ViewCache
	lookups        models.Lookups // how a page's independent lookups run
	uploads        Uploads
	echo           *echo.Echo
	lim            *limits
	metrics        *obs.Metrics // nil with METRICS=0 and in a CGI child
	front          Front
	pg             *postgresWatch      // nil: no breaker in front of PostgreSQL (tests, stage 0)
	pages          FrontPages          // nil: no front cache (before stage 8)
	requests       echo.MiddlewareFunc // what a page runs after loading its session (Stage.Requests)
}

// New builds the App for cfg.Stage from the opened dependencies; the stage
// decides which session store, gallery, image source, view cache and way of
// running a page's lookups it gets.
func New(cfg Config, d *Deps) (*App, error) {
	d.Config = cfg
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	stage, err := resolveRun(cfg)
	if err != nil {
		return nil, err
	}
	front := directFront()
	if stage.Front != nil {
		front = stage.Front(cfg)
	}
	tmpl, err := newRenderer(front.ImageURL)
	if err != nil {
		return nil, err
	}
	files, err := models.NewImageStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := poolFor(stage, d); err != nil {
		return nil, err
	}
	db, err := storesDB(stage, d) // the handle the stores are built on
	if err != nil {
		return nil, fmt.Errorf("app: database: %w", err)
	}
	a := &App{
		cfg:   cfg,
		stage: stage,
		log:   d.Log,
		db:    d.DB,
		files: files,
		tmpl:  tmpl,
		lim:   newLimits(),
		front: front,
		pg:    d.pg,
	}
	if a.users, err = accountsFor(stage, d, db); err != nil {
		return nil, fmt.Errorf("app: accounts: %w", err)
	}
	if stage.Throttles != nil {
		if a.lim.names, a.lim.addrs, err = stage.Throttles(d); err != nil {
			return nil, fmt.Errorf("app: throttles: %w", err)
		}
	}
	if !cfg.NoMetrics && !cfg.cgiChild {
		var sqlDB *sql.DB // the pool's statistics
		if d.DB != nil {
			sqlDB, _ = d.DB.DB()
		}
		a.metrics = obs.NewMetrics(sqlDB)
	}

	store, err := stage.Sessions(d)
	if err != nil {
		return nil, fmt.Errorf("app: session store: %w", err)
	}
	a.sessions = newSessionManager(a.timeSessions(store), stage.SessionRefresh)
	a.sessionRefresh = stage.SessionRefresh

	a.lookups = models.Sequential{}
	if stage.Lookups != nil {
		if a.lookups, err = stage.Lookups(d); err != nil {
			return nil, fmt.Errorf("app: lookups: %w", err)
		}
	}
	if stage.FrontPages != nil { // Stage 8: where nginx finds whole public pages
		if a.pages, err = stage.FrontPages(a, d); err != nil {
			return nil, fmt.Errorf("app: front pages: %w", err)
		}
	}
	if a.gallery, err = galleryFor(stage, d, db, a.lookups); err != nil {
		return nil, fmt.Errorf("app: gallery: %w", err)
	}
	if a.images, err = wrap(stage, d, ImageSource(diskReads{diskImages{files}}), func(s Stage) Wrap[ImageSource] { return s.Images }); err != nil {
		return nil, fmt.Errorf("app: images: %w", err)
	}
	a.views = renderViews{}
	if stage.Views != nil {
		if a.views, err = stage.Views(d); err != nil {
			return nil, fmt.Errorf("app: views: %w", err)
		}
	}
	a.images = a.countImages(a.images)
	a.uploads = inlineUploads{a}
	if stage.Uploads != nil {
		if a.uploads, err = stage.Uploads(a, d); err != nil {
			return nil, fmt.Errorf("app: uploads: %w", err)
		}
	}
	a.requests = func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	if stage.Requests != nil {
		mw, err := stage.Requests(a, d)
		if err != nil {
			return nil, fmt.Errorf("app: requests: %w", err)
		}
		if mw != nil {
			a.requests = mw
		}
	}
	if a.metrics != nil {
		for _, collect := range partsOf[metricsPart](stage) {
			if err := collect(d, a.metrics.Registry()); err != nil {
				return nil, fmt.Errorf("app: metrics: %w", err)
			}
		}
	}
	a.echo = a.routes()
	return a, nil
}

// metricsPart is a Part that registers a stage's collectors in an
// instance's metrics (stage 10: the shards' counts), once the stores exist.
type metricsPart func(d *Deps, reg prometheus.Registerer) error

// poolFor gives the database pool the size the stage's pages need
// (Stage.Pool: stage 5's fan-out holds several connections per page).
func poolFor(stage Stage, d *Deps) error {
	if d.DB == nil || stage.Pool <= models.PoolSize(d.DB) {
		return nil
	}
	return models.SetPoolSize(d.DB, stage.Pool)
}

// storesDB is the database handle the stores are built on: the one the
// process opened, wrapped by the stages' Database hooks in stage order.
func storesDB(stage Stage, d *Deps) (*gorm.DB, error) {
	return wrap(stage, d, d.DB, func(s Stage) Wrap[*gorm.DB] { return s.Database })
}

// galleryFor is the stage's photo reads and writes: the photo store on db,
// with photo states when the stage makes images after the upload (stage 6:
// then the gallery is also the workers' models.PhotoStates), wrapped by the
// stages' Gallery hooks in stage order (stage 3's cache, stage 8's page
// deletion).
func galleryFor(stage Stage, d *Deps, db *gorm.DB, lookups models.Lookups) (models.Gallery, error) {
	states := stage.Uploads != nil // the images are made after the upload
	var photos models.Gallery
	if stage.Photos != nil { // stage 10: the shards behind the ring
		var err error
		if photos, err = stage.Photos(d, db, lookups, states); err != nil {
			return nil, err
		}
	} else {
		store := models.NewPhotoStore(db, lookups)
		if states {
			store = store.WithStates()
		}
		photos = store
	}
	return wrap(stage, d, photos, func(s Stage) Wrap[models.Gallery] { return s.Gallery })
}

// Accounts are the users' sign-up and sign-in reads and writes.
type Accounts interface {
	Create(ctx context.Context, name, displayName string, passwordHash []byte) (models.User, error)
	ByName(ctx context.Context, name string) (models.User, error)
}

// accountsFor is the stage's users' store: the PostgreSQL one on db unless
// a stage makes another (stage 10: the ring's).
func accountsFor(stage Stage, d *Deps, db *gorm.DB) (Accounts, error) {
	if stage.Accounts != nil {
		return stage.Accounts(d, db)
	}
	return models.NewUserStore(db), nil
}

// ServeHTTP makes the App an http.Handler.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.echo.ServeHTTP(w, r) }

// Stage is the stage the App runs.
func (a *App) Stage() Stage { return a.stage }

// sessionCookieName is the session cookie; stage 8's nginx sends every
// request that has one to an instance.
const sessionCookieName = "flickrkillr_session"

// newSessionManager configures scs the same way for every store. refresh 0
// keeps an idle timeout, which makes scs rewrite the session on every request
// that carries one: the per-request session write that stages 1 and 2
// measure. From stage 3 on (refresh > 0) a session is written only when it
// changes, and loadSession moves its expiry forward at most once per refresh.
func newSessionManager(store scs.Store, refresh time.Duration) *scs.SessionManager {
	sm := scs.New()
	sm.Store = store
	sm.Lifetime = sessionLifetime
	sm.IdleTimeout = sessionIdle
	if refresh > 0 {
		// Stage 3: the idle timeout is the session's deadline itself
		// (scs's SetDeadline), renewed rarely instead of on every request.
		sm.IdleTimeout = 0
		sm.Lifetime = sessionIdle
	}
	sm.Codec = sessionCodec{}
	sm.Cookie.Name = sessionCookieName
	sm.Cookie.HttpOnly = true
	sm.Cookie.SameSite = http.SameSiteLaxMode
	return sm
}

// Front is what the server in front of the app does for it. With nothing in
// front (stages 0-6) the TCP peer is the client and the app serves images.
type Front struct {
	// IPExtractor finds the client's address (the log-in throttle is per address).
	IPExtractor echo.IPExtractor
	// ImageURL is where pages link a variant of a photo's image.
	ImageURL func(id int64, key string, v models.Variant) string
}

// directFront is no front: X-Forwarded-For is ignored, images are the app's routes.
func directFront() Front {
	return Front{IPExtractor: echo.ExtractIPDirect(), ImageURL: photoImagePath}
}

// ImageSource gives the bytes of a stored photo file.
type ImageSource interface {
	Image(ctx context.Context, key string, v models.Variant) (*ImageBlob, error)
}

// ImageBlob is an image ready to send. ETag and CacheControl are set by
// sources that can validate (stage 3); an empty ETag sends no validators.
type ImageBlob struct {
	Content      io.ReadSeeker
	Size         int64
	ETag         string
	CacheControl string
	close        func() error
}

// Close releases the blob (closes the file for disk blobs).
func (b *ImageBlob) Close() error {
	if b.close == nil {
		return nil
	}
	return b.close()
}

// diskImages reads every image from disk on every request (stages 0-2).
type diskImages struct {
	files *models.ImageStore
}

func (s diskImages) Image(_ context.Context, key string, v models.Variant) (*ImageBlob, error) {
	f, err := s.files.Open(key, v)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("app: image %s: %w", key, err)
	}
	return &ImageBlob{Content: f, Size: st.Size(), close: f.Close}, nil
}

package replicas

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"flickrkillr/models"
)

func TestReadsGoToAReplicaAndWritesToThePrimary(t *testing.T) {
	e := newEnv(t, Options{}, fast)
	ctx := context.Background()
	e.waitInRotation(t, true, "test_replicas_fast")

	var recovering bool
	if err := e.routed.WithContext(ctx).Raw(`SELECT pg_is_in_recovery()`).Scan(&recovering).Error; err != nil {
		t.Fatal(err)
	}
	if !recovering {
		t.Error("a read without a position ran on the primary, not the replica")
	}
	if err := e.routed.WithContext(OnPrimary(ctx)).Raw(`SELECT pg_is_in_recovery()`).Scan(&recovering).Error; err != nil || recovering {
		t.Errorf("a read marked OnPrimary ran on a replica (err %v)", err)
	}
	err := e.routed.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return tx.Raw(`SELECT pg_is_in_recovery()`).Scan(&recovering).Error
	})
	if err != nil || recovering {
		t.Errorf("a read in a transaction ran on a replica (err %v)", err)
	}
	// A request that wrote reads its own write: its later reads go to the
	// primary.
	tctx := Track(ctx)
	if _, err := models.NewUserStore(e.routed).Create(tctx, "writer", "W", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := e.routed.WithContext(tctx).Raw(`SELECT pg_is_in_recovery()`).Scan(&recovering).Error; err != nil || recovering {
		t.Errorf("a read after a write in the same request ran on a replica (err %v)", err)
	}
	st := e.router.Stats()
	if st.Replicas[0].Reads != 1 || st.ForcedReads != 1 || st.FreshnessReads != 1 || st.Primary.Writes < 2 {
		t.Errorf("counters: %+v", st)
	}

	// The primary's position is read once per write of a request: the
	// write's invalidations and the position kept for its user share it,
	// and a later write of the same request reads it again, past the first.
	first, err := e.router.PrimaryLSN(tctx)
	if err != nil {
		t.Fatal(err)
	}
	kept, ok, err := e.router.WriteLSN(tctx)
	if err != nil || !ok || kept != first {
		t.Errorf("WriteLSN after PrimaryLSN: %s %v %v, want %s", kept, ok, err, first)
	}
	if n := e.router.Stats().PositionReads - st.PositionReads; n != 1 {
		t.Errorf("the position was read %d times for one write, want 1", n)
	}
	if _, err := models.NewUserStore(e.routed).Create(tctx, "writer2", "W", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if second, err := e.router.PrimaryLSN(tctx); err != nil || second <= first {
		t.Errorf("the position after a second write: %s (%v), want past %s", second, err, first)
	}
	if n := e.router.Stats().PositionReads - st.PositionReads; n != 2 {
		t.Errorf("the position was read %d times for two writes, want 2", n)
	}
}

func TestNextvalRunsOnThePrimary(t *testing.T) {
	e := newEnv(t, Options{}, fast)
	ctx := context.Background()
	e.waitInRotation(t, true, "test_replicas_fast")
	// On the replica itself it fails: what dbresolver does with it.
	var n int64
	rep := e.router.replicas[0]
	if err := rep.pool.QueryRowContext(ctx, `SELECT nextval('users_id_seq')`).Scan(&n); err == nil ||
		!strings.Contains(err.Error(), "read-only transaction") {
		t.Fatalf("nextval on the replica: %v (want a read-only error)", err)
	}
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"marked OnPrimary", OnPrimary(ctx)}, {"unmarked", ctx}} {
		if err := e.routed.WithContext(c.ctx).Raw(`SELECT nextval('users_id_seq')`).Scan(&n).Error; err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if st := e.router.Stats(); st.Fallbacks != 0 || st.Replicas[0].Reads != 0 {
		t.Errorf("nextval reached the replica: %+v", st)
	}
}

// TestReadYourWrites is the probe: a user creates a row through
// the routed handle, and their next read, carrying the write's position,
// sees it, 1,000 times. Both standbys are in the rotation, one 500 ms
// behind: a read may go to a replica only if that replica is past the
// position, never because another replica is (GitLab issue 413203).
func TestReadYourWrites(t *testing.T) {
	e := newEnv(t, Options{}, fast, delayed)
	ctx := context.Background()
	e.waitInRotation(t, true, "test_replicas_fast", "test_replicas_delayed")
	users := models.NewUserStore(e.routed)

	// The control: without the position a read right after the write
	// misses it, or the probe below would prove nothing.
	controlMisses := 0
	for i := range 50 {
		name := fmt.Sprintf("control%d", i)
		if _, err := users.Create(ctx, name, "C", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := users.ByName(ctx, name); err != nil {
			controlMisses++
		}
	}
	t.Logf("control: %d of 50 reads without the position missed the new row", controlMisses)
	if controlMisses == 0 {
		t.Error("reads right after a write never missed: the probe cannot fail")
	}

	const probes = 1000
	misses, onReplica := 0, 0
	start := time.Now()
	for i := range probes {
		req := Track(ctx)
		name := fmt.Sprintf("probe%d", i)
		if _, err := users.Create(req, name, "P", []byte("x")); err != nil {
			t.Fatal(err)
		}
		lsn, ok, err := e.router.WriteLSN(req)
		if err != nil || !ok {
			t.Fatalf("WriteLSN: %v %v", ok, err)
		}
		next := WithMinLSN(ctx, lsn) // the next request of that user
		before := e.router.Stats()
		if _, err := users.ByName(next, name); err != nil {
			misses++
		}
		if after := e.router.Stats(); after.Primary.Reads == before.Primary.Reads {
			onReplica++
		}
	}
	t.Logf("%d probes in %s: %d misses, %d read from a replica", probes, time.Since(start).Round(time.Millisecond), misses, onReplica)
	if misses != 0 {
		t.Errorf("%d of %d reads with the write's position missed it", misses, probes)
	}

	// Later reads of that user go to a replica once one is past the
	// position, and only to one that is: wait for the fast one, then read
	// four times (round robin would give the delayed one half of them).
	var waits []time.Duration
	for i := range 30 {
		req := Track(ctx)
		name := fmt.Sprintf("later%d", i)
		if _, err := users.Create(req, name, "L", []byte("x")); err != nil {
			t.Fatal(err)
		}
		lsn, _, _ := e.router.WriteLSN(req)
		wrote := time.Now()
		for e.router.replicas[0].pos.Load() < uint64(lsn) {
			if time.Since(wrote) > 5*time.Second {
				t.Fatal("the fast standby never reached the position")
			}
			time.Sleep(time.Millisecond)
		}
		waits = append(waits, time.Since(wrote))
		next := WithMinLSN(ctx, lsn)
		for range 4 {
			srv, err := e.server(next)
			if err != nil {
				t.Fatal(err)
			}
			if srv == "test_replicas_delayed" && delayedBehind(t, e, lsn) {
				t.Fatalf("a read needing %s went to the delayed standby, which had not replayed it", lsn)
			}
			if _, err := users.ByName(next, name); err != nil {
				t.Fatalf("read after the fast replica caught up missed: %v", err)
			}
		}
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	t.Logf("the fast standby's polled position passed a write's after: p50 %s, p90 %s, max %s (poll every 50 ms)",
		waits[len(waits)/2].Round(time.Millisecond), waits[len(waits)*9/10].Round(time.Millisecond), waits[len(waits)-1].Round(time.Millisecond))
	st := e.router.Stats()
	t.Logf("counters: primary %+v, freshness reads %d, replicas %+v %+v", st.Primary, st.FreshnessReads, st.Replicas[0].DBStats, st.Replicas[1].DBStats)
}

func delayedBehind(t *testing.T, e *env, lsn LSN) bool {
	var s string
	if err := e.router.replicas[1].pool.QueryRowContext(context.Background(), `SELECT pg_last_wal_replay_lsn()::text`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	l, _ := ParseLSN(s)
	return l < lsn
}

func TestStoresOnTheRoutedHandle(t *testing.T) {
	e := newEnv(t, Options{}, delayed)
	ctx := context.Background()
	e.waitInRotation(t, true, "test_replicas_delayed")
	users, photos := models.NewUserStore(e.routed), models.NewPhotoStore(e.routed, models.Sequential{})

	// The request layer's calls: ForUser before, Keep after.
	sticky := NewRedisSticky(redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()}), "lsn:")
	req, err := ForUser(ctx, sticky, "ann")
	if err != nil {
		t.Fatal(err)
	}
	u, err := users.Create(req, "ann", "Ann", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := photos.CreatePhoto(req, models.NewPhoto{Owner: models.PublicUser{ID: u.ID, Name: u.Name}, Title: "t",
		Tags: []string{"sea"}, ImageKey: "k", Width: 1, Height: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := photos.AddComment(req, id, u.ID, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := e.router.Keep(req, sticky, "ann", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	next, err := ForUser(ctx, sticky, "ann")
	if err != nil || minLSN(next) == 0 {
		t.Fatalf("no position kept for the user: %v", err)
	}
	if _, err := users.ByName(next, "ann"); err != nil {
		t.Fatal(err)
	}
	page, err := photos.Photo(next, id)
	if err != nil {
		t.Fatal(err)
	}
	if page.Photo.Title != "t" || len(page.Tags) != 1 || len(page.Comments) != 1 {
		t.Errorf("photo page read back: %+v", page)
	}
	// Past the delay the same reads are served by the standby.
	time.Sleep(applyDelay + 200*time.Millisecond)
	before := e.router.Stats().Replicas[0].Reads
	if page, err = photos.Photo(next, id); err != nil || len(page.Comments) != 1 {
		t.Fatalf("photo page from the standby: %+v %v", page, err)
	}
	if e.router.Stats().Replicas[0].Reads == before {
		t.Error("the photo page did not come from the standby once it had replayed the write")
	}
}

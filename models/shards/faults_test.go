package shards_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"flickrkillr/app/netdelay"
	"flickrkillr/models"
	"flickrkillr/models/shards"
	"flickrkillr/models/tickets"
)

// The child of TestAFavoriteCrashBetweenItsTwoWrites: it favorites one photo
// with a Federation that kills its own process between the owner's side and
// the faver's side.
func TestMain(m *testing.M) {
	if spec := os.Getenv("SHARDS_TEST_CRASH"); spec != "" {
		os.Exit(crashChild(spec))
	}
	os.Exit(m.Run())
}

func crashChild(spec string) int {
	// spec: ringURL|shard0,shard1|user|photo
	parts := strings.Split(spec, "|")
	ctx := context.Background()
	ring, err := models.Open(ctx, parts[0], models.Options{MaxOpenConns: 4})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var hs []shards.Handle
	for _, u := range strings.Split(parts[1], ",") {
		db, err := models.Open(ctx, u, models.Options{MaxOpenConns: 4})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		hs = append(hs, shards.Handle{DB: db})
	}
	var user, photo int64
	fmt.Sscan(parts[2], &user)
	fmt.Sscan(parts[3], &photo)
	f := shards.New(ring, hs, noIDs{}, shards.Options{BetweenFavoriteWrites: func() {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}})
	if err := f.SetFavorite(ctx, user, photo, true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0 // not reached: killed between the writes
}

type noIDs struct{}

func (noIDs) Next(context.Context) (int64, error) { return 0, errors.New("no ids in the crash child") }
func (noIDs) Stats() []tickets.Stats              { return nil }

func TestAFavoriteCrashBetweenItsTwoWrites(t *testing.T) {
	b, users, photos := world(t, 2)
	ctx := context.Background()
	// A faver and a photo on different shards.
	var faver models.User
	var photo int64
	for _, p := range photos {
		owner, _ := b.f.Photo(ctx, p)
		for _, u := range users {
			if shardOf(t, b.f, u.ID) != shardOf(t, b.f, owner.Owner.ID) {
				if fav, _ := b.f.IsFavorite(ctx, u.ID, p); !fav {
					faver, photo = u, p
				}
			}
		}
	}
	if photo == 0 {
		t.Fatal("no faver and photo on different shards")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("SHARDS_TEST_CRASH=%s|%s|%d|%d", b.f.ringURL, strings.Join(b.f.urls, ","), faver.ID, photo))
	cmd.WaitDelay = 30 * time.Second
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed between the writes: %v\n%s", err, out)
	}
	owners, favers := sides(t, b.f, faver.ID, photo)
	if owners != 1 || favers != 0 || outbox(t, b.f) != 1 {
		t.Fatalf("after the crash: owner's side %d, faver's side %d, outbox %d; want 1, 0, 1", owners, favers, outbox(t, b.f))
	}
	for range 2 { // the repair, twice: nothing doubled
		if n, err := b.f.Repair(ctx, 0); err != nil {
			t.Fatal(n, err)
		}
	}
	owners, favers = sides(t, b.f, faver.ID, photo)
	if owners != 1 || favers != 1 || outbox(t, b.f) != 0 {
		t.Fatalf("after the repair: owner's side %d, faver's side %d, outbox %d; want 1, 1, 0", owners, favers, outbox(t, b.f))
	}
	if fav, err := b.f.IsFavorite(ctx, faver.ID, photo); err != nil || !fav {
		t.Fatalf("the photo page does not show the favorite: %v %v", fav, err)
	}
}

// sides counts a favorite on the owner's side and on the faver's, over
// every shard.
func sides(t *testing.T, f *fed, user, photo int64) (owners, favers int64) {
	t.Helper()
	for _, db := range f.handles {
		var o, v int64
		db.Raw(`SELECT count(*) FROM favorites WHERE user_id = ? AND photo_id = ?`, user, photo).Scan(&o)
		db.Raw(`SELECT count(*) FROM user_favorites WHERE user_id = ? AND photo_id = ?`, user, photo).Scan(&v)
		owners, favers = owners+o, favers+v
	}
	return owners, favers
}

func outbox(t *testing.T, f *fed) int64 {
	var n int64
	for _, db := range f.handles {
		var c int64
		db.Raw(`SELECT count(*) FROM favorite_outbox`).Scan(&c)
		n += c
	}
	return n
}

// shardThrough reaches a shard through app/netdelay's proxy, with no
// delay: closed, its port refuses connections and the ones it carried are
// cut, and the shard is down.
func shardThrough(t *testing.T, dsn string) (*netdelay.Proxy, string) {
	t.Helper()
	network, target, rewrite, err := netdelay.PGTarget(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p, err := netdelay.Start(network, target, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, rewrite(p.Addr())
}

func TestAShardDownFailsItsUsersOnly(t *testing.T) {
	var down *netdelay.Proxy
	b, users, photos := worldThrough(t, 2, func(i int, u string) string {
		if i != 1 {
			return u
		}
		var at string
		down, at = shardThrough(t, u)
		return at
	})
	ctx := context.Background()
	down.Close()
	var ok, failed int
	for i, u := range users {
		_, err := b.f.UserPhotos(ctx, u.Name, 0)
		_, perr := b.f.Photo(ctx, photos[i])
		onDown := shardOf(t, b.f, u.ID) == 1
		switch {
		case onDown && (!errors.Is(err, shards.ErrShardDown) || !errors.Is(perr, shards.ErrShardDown)):
			t.Errorf("user %s on the shard that is down: %v; their photo: %v", u.Name, err, perr)
		case onDown:
			failed++
		case err != nil || perr != nil:
			t.Errorf("user %s on a shard that is up: %v; their photo: %v", u.Name, err, perr)
		default:
			ok++
		}
	}
	if ok == 0 || failed == 0 {
		t.Fatalf("%d users served, %d failed: the users did not spread over both shards", ok, failed)
	}
	if _, err := b.f.Home(ctx); !errors.Is(err, shards.ErrShardDown) || !models.IsUnavailable(err) {
		t.Errorf("home with a shard down: %v (a 503 names the shard)", err)
	}
}

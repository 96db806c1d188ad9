package tickets_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"flickrkillr/models/tickets"
)

// nextvals takes n ids straight from the server's sequence.
func nextvals(t *testing.T, db *gorm.DB, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		if err := db.Raw(`SELECT nextval('` + tickets.Sequence + `')`).Scan(&ids[i]).Error; err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func TestSetupIssuesItsParityAboveAbove(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset int
		above  int64
		first  int64
	}{
		{"odd server on an empty shard", 1, 0, 1},
		{"even server on an empty shard", 2, 0, 2},
		{"odd server above an even id", 1, 1000, 1001},
		{"even server above an even id", 2, 1000, 1002},
		{"odd server above an odd id", 1, 1001, 1003},
		{"even server above an odd id", 2, 1001, 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, db := testDB(t)
			if err := tickets.Setup(context.Background(), dsn, tc.offset, tc.above); err != nil {
				t.Fatal(err)
			}
			ids := nextvals(t, db, 20)
			if ids[0] != tc.first {
				t.Errorf("first id %d, want %d", ids[0], tc.first)
			}
			for i, id := range ids {
				if id <= tc.above {
					t.Errorf("id %d is not above %d", id, tc.above)
				}
				if (id-int64(tc.offset))%2 != 0 {
					t.Errorf("id %d has the other server's parity (offset %d)", id, tc.offset)
				}
				if i > 0 && id != ids[i-1]+2 {
					t.Errorf("id %d follows %d: want a step of 2", id, ids[i-1])
				}
			}
		})
	}
}

func TestSetupNeverMovesTheSequenceBack(t *testing.T) {
	ctx := context.Background()
	dsn, db := testDB(t)
	if err := tickets.Setup(ctx, dsn, 2, 1000); err != nil {
		t.Fatal(err)
	}
	last := nextvals(t, db, 5)[4] // 1010
	for _, step := range []struct {
		name  string
		above int64
		want  int64 // the next id after Setup
	}{
		{"the same above again", 1000, last + 2},
		{"a lower above", 0, last + 4},
		{"an above between the two", last - 4, last + 6},
		{"a higher above moves it on", last + 100, last + 102},
	} {
		// Steps, not subtests: each starts where the last one left the sequence.
		if err := tickets.Setup(ctx, dsn, 2, step.above); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := nextvals(t, db, 1)[0]; got != step.want {
			t.Errorf("%s: next id %d, want %d", step.name, got, step.want)
		}
	}

	// Twice in a row with nothing issued in between skips nothing either.
	dsn2, db2 := testDB(t)
	for range 2 {
		if err := tickets.Setup(ctx, dsn2, 1, 41); err != nil {
			t.Fatal(err)
		}
	}
	if got := nextvals(t, db2, 1)[0]; got != 43 {
		t.Errorf("after Setup twice on a fresh server: next id %d, want 43", got)
	}
}

func TestSetupRefuses(t *testing.T) {
	ctx := context.Background()
	dsn, db := testDB(t)
	t.Run("an offset other than 1 or 2", func(t *testing.T) {
		for _, offset := range []int{0, 3, -1} {
			if err := tickets.Setup(ctx, dsn, offset, 0); err == nil {
				t.Errorf("offset %d: no error", offset)
			}
		}
		var n int64
		if err := db.Raw(`SELECT count(*) FROM pg_class WHERE relname = ?`, tickets.Sequence).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("a refused Setup made the sequence")
		}
	})
	t.Run("the other parity on a server already set up", func(t *testing.T) {
		if err := tickets.Setup(ctx, dsn, 1, 0); err != nil {
			t.Fatal(err)
		}
		if err := tickets.Setup(ctx, dsn, 2, 0); err == nil {
			t.Errorf("an odd server set up again as even: no error")
		}
		if id := nextvals(t, db, 1)[0]; id != 1 {
			t.Errorf("next id %d after the refused Setup, want 1", id)
		}
	})
	t.Run("a sequence of that name that does not step by 2", func(t *testing.T) {
		dsn, _ := testDB(t)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `CREATE SEQUENCE `+tickets.Sequence); err != nil {
			t.Fatal(err)
		}
		if err := tickets.Setup(ctx, dsn, 1, 0); err == nil {
			t.Errorf("a sequence with INCREMENT 1 kept: no error")
		}
	})
}

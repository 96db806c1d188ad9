package sweep

import (
	"flag"
	"testing"
)

// A sweep that writes what make writes is repeated with make; one written
// elsewhere by its own command, since make would also refresh the docs.
func TestSweepRerunCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--out", "results", "--docs", "docs/stages,README.md", "--stages", "4,5"}, `make loadtest-sweep SWEEP_FLAGS="--stages 4,5"`},
		{[]string{"--out", "results/db-latency-1ms", "--stages", "4,5"}, "make build && DATABASE_URL=$(scripts/pg.sh url dev) bin/flickrkillr loadtest sweep --out results/db-latency-1ms --stages 4,5"},
	} {
		fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
		fs.String("out", "results", "")
		fs.String("docs", "", "")
		fs.String("stages", "0-7", "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if _, rerun := CommandLine(fs); rerun != tc.want {
			t.Errorf("%v: rerun %q, want %q", tc.args, rerun, tc.want)
		}
	}
}

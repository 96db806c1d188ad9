package sweep

import (
	"flag"
	"strings"
)

// makePasses are the flags the Makefile's loadtest-sweep target passes
// before SWEEP_FLAGS: the make command that repeats a sweep leaves them out.
var makePasses = map[string]string{"out": "results", "docs": "docs/stages,README.md", "redis-server": "true"}

// CommandLine is how the report records the sweep: every flag of fs that was
// set, once, in a fixed order (make passes --out results, which a user's
// SWEEP_FLAGS may repeat), and the make command that repeats it.
func CommandLine(fs *flag.FlagSet) (command, rerun string) {
	var all, forMake []string
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		if strings.ContainsAny(v, " \t'\"$") || v == "" {
			v = "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
		}
		arg := "--" + f.Name + " " + v
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			arg = "--" + f.Name + "=" + v
		}
		all = append(all, arg)
		if makePasses[f.Name] != f.Value.String() {
			forMake = append(forMake, arg)
		}
	})
	command = strings.TrimSpace("flickrkillr loadtest sweep " + strings.Join(all, " "))
	// make also refreshes the docs' figure blocks from what it measures: a
	// sweep that wrote elsewhere (say --out results/db-latency-1ms, and no
	// --docs) is repeated by its own command, or make would put its figures there.
	if fs.Lookup("out").Value.String() != makePasses["out"] || fs.Lookup("docs").Value.String() != makePasses["docs"] {
		return command, "make build && DATABASE_URL=$(scripts/pg.sh url dev) bin/" + command
	}
	rerun = "make loadtest-sweep"
	if len(forMake) > 0 {
		rerun += " SWEEP_FLAGS=\"" + strings.ReplaceAll(strings.Join(forMake, " "), `"`, `\"`) + "\""
	}
	return command, rerun
}

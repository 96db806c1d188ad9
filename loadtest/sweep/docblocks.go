package sweep

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// docBlock matches a part of a doc that the sweep refreshes:
//
//	<!-- sweep: step 2 -->    (stage 1 against stage 2 on each ladder; step 0 is stage 0 alone)
//	<!-- sweep: ladders -->   (the table of both ladders and the talk)
//	… (generated) …
//	<!-- /sweep -->
var docBlock = regexp.MustCompile(`(?s)(<!-- sweep: (step (\d+)|ladders) -->\n).*?(<!-- /sweep -->)`)

// WriteStepBlocks refreshes the figures in the docs at paths (files, or
// directories whose *.md files are read): each block gets this sweep's
// figures when the sweep measured what it shows; other blocks, and
// everything outside the blocks, stay as they are. It returns the files it
// changed.
func WriteStepBlocks(paths []string, sr *Result) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		md, err := filepath.Glob(filepath.Join(p, "*.md"))
		if err != nil {
			return nil, err
		}
		files = append(files, md...)
	}
	measured := map[int]bool{}
	for _, n := range stagesOf(sr) {
		measured[n] = true
	}
	var changed []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return changed, err
		}
		rel, err := filepath.Rel(filepath.Dir(f), "results/README.md")
		if err != nil {
			rel = "results/README.md"
		}
		out := docBlock.ReplaceAllStringFunc(string(b), func(block string) string {
			m := docBlock.FindStringSubmatch(block)
			var body strings.Builder
			header := func() {
				fmt.Fprintf(&body, "Measured %s by the sweep in [results/README.md](%s), where its command, machine and notes are (the sweep refreshes this block: do not edit it).\n\n",
					sr.Started.Format("2006-01-02 15:04 MST"), filepath.ToSlash(rel))
			}
			if m[2] == "ladders" {
				if len(stagesOf(sr)) < 2 {
					return block
				}
				header()
				writeLadderRows(&body, sr)
				return m[1] + body.String() + m[4]
			}
			n, _ := strconv.Atoi(m[3])
			if !measured[n] || (n > 0 && !measured[n-1]) {
				return block
			}
			header()
			fmt.Fprintln(&body, "req/s (p99 ms) per route:")
			fmt.Fprintln(&body)
			if n == 0 {
				var cols []*Run
				var heads []string
				for _, l := range sr.Ladders {
					if r := sr.step(l, 0); r != nil {
						cols, heads = append(cols, r), append(heads, l.Name+": "+r.Label())
						if r.CPU != nil {
							fmt.Fprintf(&body, "- %s: %s req/s, p99 %s ms; CPU per request: server %.2f, PostgreSQL %.2f, tool %.2f ms\n", l.Title, rpsText(r), p99Text(r),
								r.CPU.PerRequestMS(r.CPU.ServerS), r.CPU.PerRequestMS(r.CPU.PostgresS), r.CPU.PerRequestMS(r.CPU.ToolS))
						}
					}
				}
				fmt.Fprintln(&body)
				writeRouteTableWithHeads(&body, cols, heads)
			} else {
				writeStep(&body, sr, n-1, n)
			}
			return m[1] + body.String() + m[4]
		})
		if out != string(b) {
			if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
				return changed, err
			}
			changed = append(changed, f)
		}
	}
	return changed, nil
}

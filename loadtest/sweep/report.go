package sweep

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"flickrkillr/loadtest"
)

// WriteReport writes dir/README.md (both ladders side by side with ratios
// to the stage before and the talk's figures, each step's routes, each
// side's CPU), dir/chart.svg (req/s per stage and ladder) and dir/sweep.json
// (everything measured).
func WriteReport(dir string, sr *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := loadtest.WriteJSON(filepath.Join(dir, "sweep.json"), sr); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "README.md"))
	if err != nil {
		return err
	}
	if err := writeSweepMarkdown(f, sr); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(sweepSVG(sr)), 0o644); err != nil {
		return err
	}
	if sr.Model == "" {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, "hosts.svg"), []byte(hostsSVG(sr)), 0o644)
}

// Write writes the report into out and, when docs names any, refreshes
// their figure blocks.
func Write(sr *Result, out string, docs []string, log *slog.Logger) error {
	if err := WriteReport(out, sr); err != nil {
		return err
	}
	log.Info("wrote the sweep report", "dir", out)
	if len(docs) > 0 {
		changed, err := WriteStepBlocks(docs, sr)
		if err != nil {
			return err
		}
		log.Info("refreshed the stage docs' figures", "files", strings.Join(changed, " "))
	}
	return nil
}

// ReadResult reads a recorded sweep (--from), to write its report again
// after the report's code or the docs changed, measuring nothing. Its
// errors are the flag's: they name --from.
func ReadResult(from string) (*Result, error) {
	b, err := os.ReadFile(from)
	if err != nil {
		return nil, fmt.Errorf("--from: %v", err)
	}
	var sr Result
	if err := json.Unmarshal(b, &sr); err != nil || len(sr.Runs) == 0 {
		return nil, fmt.Errorf("--from: %s is not a two-ladder sweep.json (%v)", from, err)
	}
	return &sr, nil
}

package sweep

import (
	"encoding/xml"
	"fmt"
	"math"
	"strings"
)

// sweepSVG draws req/s per stage as grouped bars on a log scale: one bar
// per ladder and one for the talk's 2007 figure.
func sweepSVG(sr *Result) string {
	const W, H, left, right, top, bottom = 760, 380, 70, 20, 60, 50
	plotW, plotH := float64(W-left-right), float64(H-top-bottom)
	stages := stagesOf(sr)
	colors := map[string]string{LadderTagged: "#0063dc", LadderAlone: "#ff0084"}
	const talkColor = "#9e9e9e"
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">FlickrKillr: req/s per stage, both ladders and the talk (2007)</text>`+"\n", left)
	// Legend.
	x := float64(left)
	type series struct{ name, title, color string }
	var all []series
	for _, l := range sr.Ladders {
		all = append(all, series{l.Name, l.Title, colors[l.Name]})
	}
	all = append(all, series{"talk", "the talk, 2007", talkColor})
	for _, s := range all {
		fmt.Fprintf(&b, `<rect x="%.1f" y="32" width="12" height="12" fill="%s"/><text x="%.1f" y="43">%s</text>`+"\n", x, s.color, x+16, xmlEscape(s.title))
		x += 30 + 7*float64(len(s.title))
	}
	if len(stages) == 0 {
		b.WriteString("</svg>\n")
		return b.String()
	}
	maxRPS := 1.0
	for _, r := range sr.Runs {
		if v, ok := rps(r); ok {
			maxRPS = math.Max(maxRPS, v)
		}
	}
	rpsTop := math.Pow(10, math.Ceil(math.Log10(maxRPS)))
	y := func(v float64) float64 {
		if v < 1 {
			v = 1
		}
		return float64(top) + plotH*(1-math.Log10(v)/math.Log10(rpsTop))
	}
	for d := 1.0; d <= rpsTop; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n",
			left, W-right, y(d), y(d), left-6, y(d)+4, d)
	}
	slot := plotW / float64(len(stages))
	barW := slot * 0.8 / float64(len(all))
	for i, n := range stages {
		x0 := float64(left) + slot*float64(i) + slot*0.1
		for j, s := range all {
			var v float64
			ok := false
			if s.name == "talk" {
				f, has := talk[n]
				v, ok = f.RPS, has
			} else {
				for _, l := range sr.Ladders {
					if l.Name == s.name {
						v, ok = rps(sr.step(l, n))
					}
				}
			}
			if !ok {
				continue
			}
			bx, by := x0+barW*float64(j), y(v)
			fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx+1, by, barW-2, float64(top)+plotH-by, s.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="%s">%.0f</text>`+"\n", bx+barW/2, by-4, s.color, v)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d %s</text>`+"\n", float64(left)+slot*(float64(i)+0.5), H-bottom+18, n, xmlEscape(stageName(sr, n)))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">log scale; req/s of each measured run (the talk: its own tool, its own machine, 2007)</text>`+"\n", left, H-12)
	b.WriteString("</svg>\n")
	return b.String()
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

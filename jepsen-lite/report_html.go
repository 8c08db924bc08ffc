package jepsenlite

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var outcomeColor = map[Outcome]color.RGBA{
	OutcomeOK:   {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	OutcomeFail: {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	OutcomeInfo: {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
}

// faultWindow is a fault's [start, end) in seconds.
type faultWindow struct {
	name       string
	start, end float64
}

func faultWindows(nem []NemesisEvent, end float64) []faultWindow {
	open := map[string]float64{}
	var out []faultWindow
	for _, ev := range nem {
		key := ev.Fault + fmt.Sprint(ev.Targets)
		switch ev.Phase {
		case "start":
			open[key] = secs(ev.Time)
		case "end":
			if s, ok := open[key]; ok {
				out = append(out, faultWindow{name: key, start: s, end: secs(ev.Time)})
				delete(open, key)
			}
		}
	}
	for k, s := range open {
		out = append(out, faultWindow{name: k, start: s, end: end})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

func secs(ns int64) float64 { return float64(ns) / 1e9 }

// shade adds a translucent band per fault window spanning [ylo, yhi].
func shade(p *plot.Plot, ws []faultWindow, ylo, yhi float64) {
	for _, w := range ws {
		poly, err := plotter.NewPolygon(plotter.XYs{{X: w.start, Y: ylo}, {X: w.end, Y: ylo}, {X: w.end, Y: yhi}, {X: w.start, Y: yhi}})
		if err != nil {
			continue
		}
		poly.Color = color.NRGBA{R: 0x88, G: 0x88, B: 0xdd, A: 0x40}
		poly.LineStyle.Color = color.Transparent
		p.Add(poly)
	}
}

func pngOf(p *plot.Plot, w, h vg.Length) (string, error) {
	wt, err := p.WriterTo(w, h, "png")
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// latencyPlot: every op's latency (log scale) at its invocation time,
// coloured by outcome, faults shaded. Large histories are thinned evenly.
func (r *Report) latencyPlot(ws []faultWindow) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Latency of every operation (shaded: faults)"
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "latency (ms)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	step := max(1, len(r.Ops)/30000)
	pts := map[Outcome]plotter.XYs{}
	ymax := 1.0
	for i, o := range r.Ops {
		if i%step != 0 || o.Kind == KindFinalRead {
			continue
		}
		ms := math.Max(float64(o.Complete-o.Invoke)/1e6, 0.01)
		ymax = math.Max(ymax, ms)
		pts[o.Outcome] = append(pts[o.Outcome], plotter.XY{X: secs(o.Invoke), Y: ms})
	}
	shade(p, ws, 0.01, ymax*1.2)
	for _, oc := range []Outcome{OutcomeOK, OutcomeFail, OutcomeInfo} {
		if len(pts[oc]) == 0 {
			continue
		}
		s, err := plotter.NewScatter(pts[oc])
		if err != nil {
			return nil, err
		}
		s.GlyphStyle.Color = outcomeColor[oc]
		s.GlyphStyle.Radius = vg.Points(1)
		s.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(s)
		p.Legend.Add(fmt.Sprintf("%s (%d)", oc, len(pts[oc])*step), s)
	}
	p.Legend.Top = true
	return p, nil
}

// throughputPlot: completed ops per second by outcome.
func (r *Report) throughputPlot(ws []faultWindow, end float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Throughput (ops/s completed, by outcome)"
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "ops/s"
	n := int(end) + 1
	buckets := map[Outcome][]float64{}
	for _, oc := range []Outcome{OutcomeOK, OutcomeFail, OutcomeInfo} {
		buckets[oc] = make([]float64, n)
	}
	ymax := 1.0
	for _, o := range r.Ops {
		if o.Kind == KindFinalRead {
			continue
		}
		b := int(secs(o.Complete))
		if b >= 0 && b < n {
			buckets[o.Outcome][b]++
			ymax = math.Max(ymax, buckets[o.Outcome][b])
		}
	}
	shade(p, ws, 0, ymax*1.1)
	for _, oc := range []Outcome{OutcomeOK, OutcomeFail, OutcomeInfo} {
		xy := make(plotter.XYs, n)
		for i, v := range buckets[oc] {
			xy[i] = plotter.XY{X: float64(i) + 0.5, Y: v}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = outcomeColor[oc]
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(string(oc), l)
	}
	p.Legend.Top = true
	return p, nil
}

// leaderPlot: which node the harness saw leading (0 = none), as steps.
func (r *Report) leaderPlot(ws []faultWindow, end float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Leader timeline (0 = no leader)"
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "leader node"
	num := func(id string) float64 {
		n, _ := strconv.Atoi(strings.TrimPrefix(id, "n"))
		return float64(n)
	}
	maxN := float64(max(r.Config.Nodes, 1))
	shade(p, ws, 0, maxN+0.5)
	var xy plotter.XYs
	prev := 0.0
	for _, l := range r.Leaders {
		x := secs(l.Time)
		xy = append(xy, plotter.XY{X: x, Y: prev}, plotter.XY{X: x, Y: num(l.Leader)})
		prev = num(l.Leader)
	}
	xy = append(xy, plotter.XY{X: end, Y: prev})
	l, err := plotter.NewLine(xy)
	if err != nil {
		return nil, err
	}
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Y.Min, p.Y.Max = 0, maxN+0.5
	var ticks []plot.Tick
	for i := 0; i <= int(maxN); i++ {
		label := "none"
		if i > 0 {
			label = "n" + strconv.Itoa(i)
		}
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: label})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	return p, nil
}

var reportTmpl = template.Must(template.New("r").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>jepsen-lite {{.Verdict}} seed {{.Seed}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1100px} .valid{color:#2ca02c} .invalid{color:#d62728} .unknown{color:#ff7f0e}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:2px 8px;text-align:left} pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head>
<body>
<h1>jepsen-lite: <span class="{{.Verdict}}">{{.Verdict}}</span></h1>
<p>seed {{.Seed}} &middot; {{.Ops}} ops &middot; replay: <code>{{.Replay}}</code></p>
<table><tr><th>checker</th><th>verdict</th><th>summary</th></tr>
{{range .Checks}}<tr><td>{{.Name}}</td><td class="{{.Verdict}}">{{.Verdict}}</td><td>{{.Summary}}</td></tr>{{end}}</table>
{{range .Checks}}{{if .Details}}<h3>{{.Name}}</h3><pre>{{range .Details}}{{.}}
{{end}}</pre>{{range .Files}}<p><a href="{{.}}">{{.}}</a></p>{{end}}{{end}}{{end}}
{{range .Images}}<p><img src="data:image/png;base64,{{.}}" style="width:100%"></p>{{end}}
<h3>Faults</h3><table><tr><th>time</th><th>phase</th><th>fault</th><th>targets</th><th>leader</th><th>detail</th></tr>
{{range .Nemesis}}<tr><td>{{.T}}</td><td>{{.Phase}}</td><td>{{.Fault}}</td><td>{{.Targets}}</td><td>{{.Leader}}</td><td>{{.Detail}}</td></tr>{{end}}</table>
</body></html>`))

func (r *Report) writeHTML(path string) error {
	var end float64
	for _, o := range r.Ops {
		end = math.Max(end, secs(o.Complete))
	}
	ws := faultWindows(r.Nemesis, end)
	var imgs []template.URL
	for _, mk := range []func() (*plot.Plot, error){
		func() (*plot.Plot, error) { return r.latencyPlot(ws) },
		func() (*plot.Plot, error) { return r.throughputPlot(ws, end) },
		func() (*plot.Plot, error) { return r.leaderPlot(ws, end) },
	} {
		p, err := mk()
		if err != nil {
			return err
		}
		h := 9 * vg.Centimeter
		if len(imgs) == 0 {
			h = 13 * vg.Centimeter
		}
		s, err := pngOf(p, 26*vg.Centimeter, h)
		if err != nil {
			return err
		}
		imgs = append(imgs, template.URL(s))
	}
	type nemRow struct {
		T                            string
		Phase, Fault, Leader, Detail string
		Targets                      string
	}
	var rows []nemRow
	for _, ev := range r.Nemesis {
		rows = append(rows, nemRow{T: time.Duration(ev.Time).Round(time.Millisecond).String(), Phase: ev.Phase, Fault: ev.Fault,
			Leader: ev.Leader, Detail: ev.Detail, Targets: strings.Join(ev.Targets, ",")})
	}
	var buf bytes.Buffer
	err := reportTmpl.Execute(&buf, map[string]any{
		"Verdict": r.Result.Verdict, "Seed": r.Config.Seed, "Ops": len(r.Ops), "Replay": r.Config.Replay,
		"Checks": r.Result.Checks, "Images": imgs, "Nemesis": rows,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run. Times are in milliseconds, CPU in
// microseconds, memory in MiB.
type Report struct {
	// Command reproduces the run.
	Command string  `json:"command"`
	Options Options `json:"-"`
	// Sluice is the benchmarked binary's `sluice version` line.
	Sluice  string `json:"sluice"`
	Binary  string `json:"binary"`
	Harness string `json:"harness_go"`
	Machine string `json:"machine"`
	// GatewayCPU and LoadCPU are the taskset CPU lists (empty: unpinned);
	// HarnessCPUs is the load generator's own affinity.
	GatewayCPU  string    `json:"gateway_cpu"`
	LoadCPU     string    `json:"load_cpu"`
	HarnessCPUs string    `json:"harness_cpus"`
	Started     time.Time `json:"started"`
	Seconds     float64   `json:"seconds"`
	Points      []Point   `json:"points"`
	Targets     []Target  `json:"targets"`
	// Contended is set when the gateway waited long for its CPU: see
	// Point.GatewayCPUWaitPerReqUs.
	Contended bool   `json:"gateway_cpu_contended"`
	Ledger    Ledger `json:"ledger"`
}

// Side is one side's figures at one point.
type Side struct {
	Requests     int      `json:"requests"`
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	Seconds      float64  `json:"seconds"`
	Throughput   float64  `json:"throughput_rps"`
	P50Ms        float64  `json:"p50_ms"`
	P99Ms        float64  `json:"p99_ms"`
	// Time to the first body byte, streams only.
	TTFBP50Ms float64 `json:"ttfb_p50_ms,omitempty"`
	TTFBP99Ms float64 `json:"ttfb_p99_ms,omitempty"`
}

func side(p phase) Side {
	s := Side{Requests: p.Requests, Errors: p.Errors, ErrorSamples: p.Samples, Seconds: p.Elapsed.Seconds(),
		P50Ms: ms(percentile(p.Latency, .50)), P99Ms: ms(percentile(p.Latency, .99)),
		TTFBP50Ms: ms(percentile(p.TTFB, .50)), TTFBP99Ms: ms(percentile(p.TTFB, .99))}
	if p.Elapsed > 0 {
		s.Throughput = float64(p.Requests-p.Errors) / p.Elapsed.Seconds()
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Point is one kind of load at one concurrency, both sides, and what the
// gateway cost.
type Point struct {
	Kind        string `json:"kind"` // KindChat or KindStream
	Concurrency int    `json:"concurrency"`
	Direct      Side   `json:"direct"`
	Sluice      Side   `json:"sluice"`
	// WarmupErrors counts failed answers in the unmeasured warm-up.
	WarmupErrors  int `json:"warmup_errors"`
	warmupSamples []string

	AddedP50Ms      float64 `json:"added_p50_ms"`
	AddedP99Ms      float64 `json:"added_p99_ms"`
	LatencyRatioP50 float64 `json:"latency_ratio_p50"`
	AddedTTFBP50Ms  float64 `json:"added_ttfb_p50_ms,omitempty"`
	// ThroughputPct is Sluice's throughput as a percentage of direct.
	ThroughputPct float64 `json:"throughput_pct_of_direct"`
	// GatewayCPUPerReqUs is the gateway's user+system CPU over the point
	// divided by the requests sent through it.
	GatewayCPUPerReqUs float64 `json:"gateway_cpu_per_request_us"`
	// GatewayCPUWaitPerReqUs is the time the gateway's threads waited,
	// runnable, for their CPU over the point, per request through it. Much
	// of it means something else ran on the gateway's CPU: the gateway's
	// latency and throughput figures are then inflated by the machine.
	GatewayCPUWaitPerReqUs float64 `json:"gateway_cpu_wait_per_request_us"`
	// GatewayPeakRSSMiB is the gateway's VmHWM during the point, or since
	// it started if PeakRSSSinceStart (the kernel refused the reset).
	GatewayPeakRSSMiB float64 `json:"gateway_peak_rss_mib"`
	PeakRSSSinceStart bool    `json:"peak_rss_since_start,omitempty"`
	// Ledger commit wait from the gateway's histogram over the point's
	// measured phases (bucket-interpolated).
	CommitWaits       int64   `json:"commit_waits"`
	CommitWaitP50Ms   float64 `json:"commit_wait_p50_ms"`
	CommitWaitP99Ms   float64 `json:"commit_wait_p99_ms"`
	CommitTimeouts    int64   `json:"commit_timeouts"`
	LedgerWriteErrors int64   `json:"ledger_write_errors"`
}

func (p *Point) derive() {
	d, s := p.Direct, p.Sluice
	p.AddedP50Ms = s.P50Ms - d.P50Ms
	p.AddedP99Ms = s.P99Ms - d.P99Ms
	if d.P50Ms > 0 {
		p.LatencyRatioP50 = s.P50Ms / d.P50Ms
	}
	if p.Kind == KindStream {
		p.AddedTTFBP50Ms = s.TTFBP50Ms - d.TTFBP50Ms
	}
	if d.Throughput > 0 {
		p.ThroughputPct = 100 * s.Throughput / d.Throughput
	}
}

const (
	commitWaitMetric     = "sluice_ledger_commit_wait_seconds"
	commitTimeoutsMetric = "sluice_ledger_commit_timeouts_total"
	writeErrorsMetric    = "sluice_ledger_write_errors_total"
)

// ledgerFigures fills the commit-wait figures from two scrapes.
func (p *Point) ledgerFigures(before, after metrics) {
	h := histogramDelta(before.histogram(commitWaitMetric), after.histogram(commitWaitMetric))
	if len(h) > 0 {
		p.CommitWaits = int64(h[len(h)-1].count)
	}
	if v, ok := histogramQuantile(.50, h); ok {
		p.CommitWaitP50Ms = v * 1000
	}
	if v, ok := histogramQuantile(.99, h); ok {
		p.CommitWaitP99Ms = v * 1000
	}
	p.CommitTimeouts = int64(after[commitTimeoutsMetric] - before[commitTimeoutsMetric])
	p.LedgerWriteErrors = int64(after[writeErrorsMetric] - before[writeErrorsMetric])
}

// Errors counts everything wrong at this point.
func (p *Point) Errors() int {
	return p.Direct.Errors + p.Sluice.Errors + p.WarmupErrors + int(p.CommitTimeouts+p.LedgerWriteErrors)
}

// Ledger is the check of the ledger after the gateway stopped.
type Ledger struct {
	Sent         int64  `json:"requests_sent"` // through Sluice, probes and warm-ups included
	Records      int64  `json:"records"`
	ErrorRecords int64  `json:"error_records"` // records with an error class
	Problem      string `json:"problem,omitempty"`
}

// TotalErrors counts failed answers, ledger timeouts and write errors, and
// a ledger that does not hold one record per request.
func (r *Report) TotalErrors() int {
	n := 0
	for i := range r.Points {
		n += r.Points[i].Errors()
	}
	if r.Ledger.Problem != "" {
		n++
	}
	return n
}

// Target is one of issue 2's performance targets and this run's figure.
type Target struct {
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Unit   string  `json:"unit"`
	AtMost bool    `json:"at_most"` // the value must not exceed the limit (else reach it)
	Met    bool    `json:"met"`
}

// targets compares the points with issue 2's targets, where the run has
// the point a target is about.
func targets(ps []Point) []Target {
	find := func(kind string, conc int) *Point {
		for i := range ps {
			if ps[i].Kind == kind && ps[i].Concurrency == conc {
				return &ps[i]
			}
		}
		return nil
	}
	var ts []Target
	add := func(fig string, v, limit float64, unit string, atMost bool) {
		met := v <= limit
		if !atMost {
			met = v >= limit
		}
		ts = append(ts, Target{fig, v, limit, unit, atMost, met})
	}
	if p := find(KindChat, 1); p != nil {
		add("added latency at 1 connection, p50", p.AddedP50Ms, 0.35, "ms", true)
	}
	if p := find(KindChat, 64); p != nil {
		add("throughput at 64 connections, % of direct", p.ThroughputPct, 45, "%", false)
	}
	if p := find(KindStream, 1); p != nil {
		add("streaming time to first byte at 1 connection, added p50", p.AddedTTFBP50Ms, 0.20, "ms", true)
	}
	if p := find(KindChat, 16); p != nil {
		add("gateway CPU per request at 16 connections", p.GatewayCPUPerReqUs, 85, "µs", true)
	}
	if len(ps) > 0 {
		var rss, p50, p99 float64
		for _, p := range ps {
			rss = math.Max(rss, p.GatewayPeakRSSMiB)
			p50 = math.Max(p50, p.CommitWaitP50Ms)
			p99 = math.Max(p99, p.CommitWaitP99Ms)
		}
		add("peak RSS (highest point)", rss, 40, "MiB", true)
		add("ledger commit wait p50 (highest point)", p50, 0.1, "ms", true)
		add("ledger commit wait p99 (highest point)", p99, 2, "ms", true)
	}
	return ts
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people: both sides per point, then the
// gateway's cost per point, the targets, and the ledger check. Errors are
// announced first and last.
func (r *Report) WriteTable(w io.Writer) error {
	bw := &errWriter{w: w}
	pinning := "unpinned"
	if r.GatewayCPU != "" {
		pinning = fmt.Sprintf("gateway on CPU %s; simulator on CPU %s", r.GatewayCPU, r.LoadCPU)
	}
	bw.printf("Sluice benchmark: %s vs the simulator directly\n", r.Sluice)
	bw.printf("machine:   %s; harness %s\n", r.Machine, r.Harness)
	bw.printf("pinning:   %s; load generator on CPUs %s\n", pinning, r.HarnessCPUs)
	bw.printf("reproduce: %s\n", r.Command)
	bw.printf("started:   %s, took %.0fs\n", r.Started.Format(time.RFC3339), r.Seconds)
	r.writeErrors(bw)

	bw.printf("\nLOAD (each point alternates the two sides over %d rounds)\n", r.Options.Rounds)
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tconn\tmode\trequests\terrors\treq/s\tp50 ms\tp99 ms\tTTFB p50\tTTFB p99\t")
	for _, p := range r.Points {
		for _, s := range []struct {
			mode string
			s    Side
		}{{ModeDirect, p.Direct}, {ModeSluice, p.Sluice}} {
			ttfb50, ttfb99 := "-", "-"
			if p.Kind == KindStream {
				ttfb50, ttfb99 = fmt.Sprintf("%.3f", s.s.TTFBP50Ms), fmt.Sprintf("%.3f", s.s.TTFBP99Ms)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%.0f\t%.3f\t%.3f\t%s\t%s\t\n", p.Kind, p.Concurrency, s.mode,
				s.s.Requests, s.s.Errors, s.s.Throughput, s.s.P50Ms, s.s.P99Ms, ttfb50, ttfb99)
		}
	}
	tw.Flush()

	bw.printf("\nGATEWAY COST (Sluice minus direct; CPU = gateway utime+stime / requests)\n")
	tw = tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tconn\tadded p50\tp50 ratio\tadded p99\tadded TTFB p50\tthroughput\tCPU/req\tCPU wait/req\tpeak RSS\tcommit wait p50/p99\t")
	for _, p := range r.Points {
		ttfb := "-"
		if p.Kind == KindStream {
			ttfb = fmt.Sprintf("%+.3f ms", p.AddedTTFBP50Ms)
		}
		rss := fmt.Sprintf("%.1f MiB", p.GatewayPeakRSSMiB)
		if p.PeakRSSSinceStart {
			rss += "*"
		}
		fmt.Fprintf(tw, "%s\t%d\t%+.3f ms\t%.2fx\t%+.3f ms\t%s\t%.0f%%\t%.0f µs\t%.0f µs\t%s\t%.3f/%.3f ms\t\n", p.Kind, p.Concurrency,
			p.AddedP50Ms, p.LatencyRatioP50, p.AddedP99Ms, ttfb, p.ThroughputPct, p.GatewayCPUPerReqUs, p.GatewayCPUWaitPerReqUs,
			rss, p.CommitWaitP50Ms, p.CommitWaitP99Ms)
	}
	tw.Flush()
	if r.Contended {
		bw.printf("note: the gateway waited for its CPU for more than a quarter of the CPU it used (CPU wait/req):\n" +
			"      something else ran on its CPU, so its latency and throughput figures are inflated; rerun on a quiet machine.\n")
	}

	if len(r.Targets) > 0 {
		bw.printf("\nTARGETS (issue 2)\n")
		tw = tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		for _, t := range r.Targets {
			op, verdict := "≥", "met"
			if t.AtMost {
				op = "≤"
			}
			if !t.Met {
				verdict = "MISSED"
			}
			fmt.Fprintf(tw, "%s\t%.3g %s\t%s %g %s\t%s\n", t.Figure, t.Value, t.Unit, op, t.Limit, t.Unit, verdict)
		}
		tw.Flush()
	}

	l := r.Ledger
	bw.printf("\nledger: %d records for %d requests sent through Sluice (%d with an error class)", l.Records, l.Sent, l.ErrorRecords)
	if l.Problem != "" {
		bw.printf(": PROBLEM: %s\n", l.Problem)
	} else {
		bw.printf(": one each\n")
	}
	r.writeErrors(bw)
	return bw.err
}

// contended reports whether the gateway waited for its CPU, at any point,
// for more than a quarter of the CPU time it used.
func (r *Report) contended() bool {
	for _, p := range r.Points {
		if p.GatewayCPUWaitPerReqUs > p.GatewayCPUPerReqUs/4 {
			return true
		}
	}
	return false
}

// writeErrors announces errors loudly, with samples.
func (r *Report) writeErrors(w *errWriter) {
	n := r.TotalErrors()
	if n == 0 {
		return
	}
	bar := strings.Repeat("!", 72)
	w.printf("\n%s\n!!! THIS RUN HAD %d ERRORS: its figures are not to be trusted.\n", bar, n)
	for _, p := range r.Points {
		if p.Errors() == 0 {
			continue
		}
		w.printf("!!! %s at %d connections: direct %d, sluice %d, warm-up %d, commit timeouts %d, ledger write errors %d\n",
			p.Kind, p.Concurrency, p.Direct.Errors, p.Sluice.Errors, p.WarmupErrors, p.CommitTimeouts, p.LedgerWriteErrors)
		for _, s := range append(append(append([]string(nil), p.Direct.ErrorSamples...), p.Sluice.ErrorSamples...), p.warmupSamples...) {
			w.printf("!!!   %s\n", s)
		}
	}
	if r.Ledger.Problem != "" {
		w.printf("!!! ledger: %s\n", r.Ledger.Problem)
	}
	w.printf("%s\n", bar)
}

// errWriter keeps the first write error so the table code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Kinds of load.
const (
	KindChat   = "chat"   // non-streaming chat completions
	KindStream = "stream" // streaming chat completions
)

// Modes: the two sides of every point.
const (
	ModeDirect = "direct" // the simulator, no gateway
	ModeSluice = "sluice" // the same requests through the gateway
)

// env is a running benchmark: the simulator, the gateway and the clients.
type env struct {
	o       Options
	dir     string
	cfgPath string
	sim, gw *proc
	simAddr string
	gwAddr  string
	key     string
	version string
	scraper *http.Client
	viaSent atomic.Int64 // requests sent through the gateway, probes and warm-ups included
}

func (e *env) cpus(c string) string {
	if e.o.NoPin {
		return ""
	}
	return c
}

// start launches the simulator and the gateway and creates a key.
func start(ctx context.Context, o Options) (_ *env, err error) {
	dir, err := runDir(o.TempDir)
	if err != nil {
		return nil, err
	}
	e := &env{o: o, dir: dir, cfgPath: filepath.Join(dir, "sluice.yaml"),
		scraper: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.stop(), e.cleanup())
		}
	}()
	out, err := runSluice(ctx, o.Sluice, "version")
	if err != nil {
		return e, err
	}
	e.version = strings.TrimSpace(string(out))

	simPort, err := freePort()
	if err != nil {
		return e, err
	}
	e.simAddr = "127.0.0.1:" + strconv.Itoa(simPort)
	e.sim, err = startProc("simulator", e.cpus(o.LoadCPU), o.Sluice,
		[]string{"simulate", "--listen", e.simAddr, "--output-tokens", strconv.Itoa(o.OutputTokens)},
		filepath.Join(dir, "simulator.log"))
	if err != nil {
		return e, err
	}
	if err := waitReady(ctx, e.sim, 15*time.Second, dialReady(e.simAddr)); err != nil {
		return e, err
	}

	gwPort, err := freePort()
	if err != nil {
		return e, err
	}
	e.gwAddr = "127.0.0.1:" + strconv.Itoa(gwPort)
	cfg := gatewayConfig(e.gwAddr, e.simAddr, filepath.Join(dir, "ledger.db"), o.ExtraConfig)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		return e, err
	}
	// The key is created before the gateway starts, as an operator would,
	// so the gateway finds it in the store (and makes no first admin key).
	out, err = runSluice(ctx, o.Sluice, "keys", "create", "--config", e.cfgPath, "--team", benchTeam, "--name", "sluice bench")
	if err != nil {
		return e, err
	}
	e.key = strings.TrimSpace(string(out))
	if !strings.HasPrefix(e.key, "sk-") || strings.ContainsAny(e.key, " \n") {
		return e, fmt.Errorf("sluice keys create printed %q, not a key", clip(out))
	}
	e.gw, err = startProc("gateway", e.cpus(o.GatewayCPU), o.Sluice,
		[]string{"serve", "--config", e.cfgPath}, filepath.Join(dir, "gateway.log"))
	if err != nil {
		return e, err
	}
	if err := waitReady(ctx, e.gw, 30*time.Second, httpReady("http://"+e.gwAddr+"/healthz")); err != nil {
		return e, err
	}
	e.progress("simulator pid %d on %s; gateway pid %d on %s; files in %s",
		e.sim.pid(), e.simAddr, e.gw.pid(), e.gwAddr, dir)
	return e, nil
}

// stop stops the gateway (letting it flush its ledger), then the simulator.
func (e *env) stop() error {
	var errs []error
	if e.gw != nil {
		errs = append(errs, e.gw.stop(20*time.Second))
	}
	if e.sim != nil {
		errs = append(errs, e.sim.stop(5*time.Second))
	}
	return errors.Join(errs...)
}

// cleanup removes the run's directory unless asked to keep it.
func (e *env) cleanup() error {
	if e.o.Keep || e.dir == "" {
		return nil
	}
	return os.RemoveAll(e.dir)
}

// targets returns the direct and via-Sluice targets for one kind of load,
// each with a client sized for conc connections.
func (e *env) targets(kind string, conc int) (direct, via *target) {
	stream := kind == KindStream
	body := func(model string) []byte {
		b, _ := json.Marshal(map[string]any{
			"model": model,
			"messages": []map[string]string{
				{"role": "system", "content": "You are a helpful assistant. Answer briefly."},
				{"role": "user", "content": "Write a short note about measuring the latency a proxy adds."},
			},
			"stream": stream,
		})
		return b
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if stream {
		h.Set("Accept", "text/event-stream")
	}
	hv := h.Clone()
	hv.Set("Authorization", "Bearer "+e.key)
	direct = &target{mode: ModeDirect, url: "http://" + e.simAddr + "/v1/chat/completions", header: h,
		body: body(upstreamModel), stream: stream, client: newClient(conc)}
	via = &target{mode: ModeSluice, url: "http://" + e.gwAddr + "/v1/chat/completions", header: hv,
		body: body(endpointName), stream: stream, client: newClient(conc), sent: &e.viaSent}
	return direct, via
}

// probe checks one answer from each side thoroughly and returns the cheap
// checks for the load. The gateway must give the simulator's answer, with
// usage on non-streamed answers and no usage chunk in streams the client
// did not ask usage for.
func (e *env) probe(ctx context.Context, kind string) (direct, via func(int, []byte) error, err error) {
	d, v := e.targets(kind, 1)
	analyse, checker := analyseChat, chatCheck
	if kind == KindStream {
		analyse, checker = analyseStream, streamCheck
	}
	var res [2]probeResult
	for i, t := range []*target{d, v} {
		var status int
		var body []byte
		t.check = func(s int, b []byte) error { status, body = s, b; return nil }
		if _, _, _, err := t.do(ctx, nil); err != nil {
			return nil, nil, fmt.Errorf("probe %s %s: %w", kind, t.mode, err)
		}
		if res[i], err = analyse(status, body); err != nil {
			return nil, nil, fmt.Errorf("probe %s %s: %w", kind, t.mode, err)
		}
		t.client.CloseIdleConnections()
	}
	switch {
	case res[0].content != res[1].content:
		return nil, nil, fmt.Errorf("probe %s: Sluice answered %q, the simulator %q", kind, res[1].content, res[0].content)
	case kind == KindChat && !res[1].usage:
		return nil, nil, fmt.Errorf("probe %s: Sluice's answer carries no usage", kind)
	case kind == KindStream && res[1].usage:
		return nil, nil, fmt.Errorf("probe %s: Sluice's stream carries a usage chunk the client did not ask for", kind)
	}
	return checker(res[0]), checker(res[1]), nil
}

// run measures every point.
func (e *env) run(ctx context.Context) (*Report, error) {
	harnessCPUs, _ := statusField(0, "Cpus_allowed_list")
	r := &Report{
		Command:     "sluice bench " + strings.Join(e.o.Args(), " "),
		Options:     e.o,
		Sluice:      e.version,
		Binary:      e.o.Sluice,
		Harness:     runtime.Version(),
		Machine:     machine(),
		HarnessCPUs: harnessCPUs,
		Started:     time.Now().UTC().Truncate(time.Second),
	}
	if !e.o.NoPin {
		r.GatewayCPU, r.LoadCPU = e.o.GatewayCPU, e.o.LoadCPU
	}
	for _, k := range []struct {
		kind  string
		concs []int
	}{{KindChat, e.o.Concurrency}, {KindStream, e.o.StreamConcurrency}} {
		if len(k.concs) == 0 {
			continue
		}
		dc, vc, err := e.probe(ctx, k.kind)
		if err != nil {
			return nil, err
		}
		for _, conc := range k.concs {
			p, err := e.point(ctx, k.kind, conc, dc, vc)
			if err != nil {
				return nil, err
			}
			r.Points = append(r.Points, p)
		}
	}
	r.Seconds = time.Since(r.Started).Seconds()
	r.Targets = targets(r.Points)
	r.Contended = r.contended()
	return r, nil
}

func (e *env) progress(format string, args ...any) {
	if e.o.Progress != nil {
		fmt.Fprintf(e.o.Progress, format+"\n", args...)
	}
}

// point measures one kind of load at one concurrency: a warm-up of each
// side, then rounds alternating which side goes first.
func (e *env) point(ctx context.Context, kind string, conc int, dc, vc func(int, []byte) error) (Point, error) {
	d, v := e.targets(kind, conc)
	d.check, v.check = dc, vc
	defer d.client.CloseIdleConnections()
	defer v.client.CloseIdleConnections()
	p := Point{Kind: kind, Concurrency: conc}
	rssReset := resetPeakRSS(e.gw.pid())

	phaseCap := e.o.MaxDuration / time.Duration(2*e.o.Rounds)
	if e.o.Warmup > 0 {
		for _, t := range []*target{d, v} {
			w := t.run(ctx, conc, e.o.Warmup, phaseCap)
			p.WarmupErrors += w.Errors
			p.warmupSamples = append(p.warmupSamples, w.Samples...)
		}
	}
	before, err := e.scrape(ctx)
	if err != nil {
		return p, err
	}
	cpu0, err := procCPU(e.gw.pid())
	if err != nil {
		return p, fmt.Errorf("gateway cpu: %w", err)
	}
	wait0, waitErr := procRunQueueWait(e.gw.pid())
	var direct, via phase
	for i := 0; i < e.o.Rounds && ctx.Err() == nil; i++ {
		n := e.o.Requests*(i+1)/e.o.Rounds - e.o.Requests*i/e.o.Rounds
		order := []*target{d, v}
		if i%2 == 1 {
			order = []*target{v, d}
		}
		for _, t := range order {
			res := t.run(ctx, conc, n, phaseCap)
			if t == d {
				direct.merge(res)
			} else {
				via.merge(res)
			}
			e.progress("%-6s conc %-3d round %d/%d %-6s %6d requests %8.0f req/s %d errors",
				kind, conc, i+1, e.o.Rounds, t.mode, res.Requests, float64(res.Requests)/res.Elapsed.Seconds(), res.Errors)
		}
	}
	if err := ctx.Err(); err != nil {
		return p, err
	}
	// The gateway's CPU is taken over the whole point, its idle direct
	// phases included, so that background work its requests cause (ledger
	// checkpoints, GC) is counted.
	cpu1, err := procCPU(e.gw.pid())
	if err != nil {
		return p, fmt.Errorf("gateway cpu: %w", err)
	}
	wait1, err := procRunQueueWait(e.gw.pid())
	waitErr = errors.Join(waitErr, err)
	after, err := e.scrape(ctx)
	if err != nil {
		return p, err
	}
	rss, err := peakRSS(e.gw.pid())
	if err != nil {
		return p, fmt.Errorf("gateway rss: %w", err)
	}
	p.Direct, p.Sluice = side(direct), side(via)
	p.derive()
	if via.Requests > 0 {
		p.GatewayCPUPerReqUs = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(via.Requests)
		if waitErr == nil {
			p.GatewayCPUWaitPerReqUs = float64(max(0, wait1-wait0)) / float64(time.Microsecond) / float64(via.Requests)
		}
	}
	p.GatewayPeakRSSMiB = float64(rss) / (1 << 20)
	p.PeakRSSSinceStart = !rssReset
	p.ledgerFigures(before, after)
	return p, nil
}

// scrape fetches the gateway's /metrics.
func (e *env) scrape(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.gwAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.scraper.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape gateway metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape gateway metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape gateway metrics: %s", resp.Status)
	}
	return parseMetrics(b)
}

// checkLedger counts the records the stopped gateway left in its ledger:
// one per request sent through it, none lost.
func (e *env) checkLedger(ctx context.Context, r *Report) {
	r.Ledger.Sent = e.viaSent.Load()
	out, err := runSluice(ctx, e.o.Sluice, "usage", "--config", e.cfgPath, "--by", "endpoint", "--format", "json")
	if err != nil {
		r.Ledger.Problem = err.Error()
		return
	}
	var rep struct {
		Total struct {
			Requests int64 `json:"requests"`
			Errors   int64 `json:"errors"`
		} `json:"total"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		r.Ledger.Problem = fmt.Sprintf("sluice usage: %v: %s", err, clip(out))
		return
	}
	r.Ledger.Records, r.Ledger.ErrorRecords = rep.Total.Requests, rep.Total.Errors
	if r.Ledger.Records != r.Ledger.Sent {
		r.Ledger.Problem = fmt.Sprintf("%d records for %d requests", r.Ledger.Records, r.Ledger.Sent)
	}
}

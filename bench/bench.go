// Package bench is Sluice's benchmark harness. It measures the gateway in
// front of the simulator server against the simulator measured directly, in
// the same run, so that machine noise hits both sides alike.
//
// Run starts `sluice simulate` and `sluice serve` as subprocesses on free
// loopback ports, with keys, metering and the durable SQLite ledger all on
// (the production path), pins them to CPUs with taskset, drives a bounded
// load at fixed concurrencies against each side in interleaved rounds, and
// prints throughput, latency, time to first byte and the gateway's cost:
//
//	err := bench.Run(ctx, bench.Options{}, os.Stdout) // the defaults: ~1 minute
//
// The load generator runs in the calling process; pin it to the load CPU
// (PinSelf, which `sluice bench` calls) so it does not compete with the
// gateway.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Options configures a run. The zero value means every default.
type Options struct {
	// Sluice is the sluice binary to launch. Empty means os.Executable().
	Sluice string
	// GatewayCPU and LoadCPU are taskset CPU lists. The gateway runs on
	// GatewayCPU; the simulator (and, via PinSelf, the load generator) on
	// LoadCPU. Empty means "0" and "1".
	GatewayCPU, LoadCPU string
	// NoPin runs everything unpinned (for machines without taskset or with
	// one CPU; the figures are then not comparable with pinned runs).
	NoPin bool
	// Concurrency lists the connection counts for non-streaming chat;
	// nil means 1, 16, 64. StreamConcurrency is the same for streaming
	// chat; nil means 1, 16. An empty non-nil slice skips that kind.
	Concurrency, StreamConcurrency []int
	// Requests is how many measured requests each side gets per point.
	// Zero means 20000.
	Requests int
	// MaxDuration caps one point's measured phases (both sides, all
	// rounds); a point stops early when it is reached. Zero means 20s.
	MaxDuration time.Duration
	// Warmup is how many unmeasured requests each side gets per point
	// before its rounds. Zero means 500; negative means none.
	Warmup int
	// Rounds is how many times the sides alternate within a point. Zero
	// means 4.
	Rounds int
	// OutputTokens is the simulator's answer length. Zero means 16.
	OutputTokens int
	// ExtraConfig is YAML appended to the generated gateway configuration
	// (top-level keys other than listen, ledger, upstreams and endpoints),
	// e.g. "audit: {enabled: false}" to measure without a feature.
	ExtraConfig string
	// TempDir is where the run's directory (config, ledger, logs) is made.
	// Empty means os.TempDir(). The run's directory is removed afterwards
	// unless Keep is set.
	TempDir string
	Keep    bool
	// JSON makes Run print the report as JSON instead of a table.
	JSON bool
	// Progress, if not nil, receives a line per phase while the run goes.
	Progress io.Writer
}

// Defaults of the zero Options.
const (
	DefaultGatewayCPU   = "0"
	DefaultLoadCPU      = "1"
	DefaultRequests     = 20000
	DefaultMaxDuration  = 20 * time.Second
	DefaultWarmup       = 500
	DefaultRounds       = 4
	DefaultOutputTokens = 16
)

// withDefaults returns o with every zero field set.
func (o Options) withDefaults() (Options, error) {
	if o.Sluice == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("find the sluice binary: %w", err)
		}
		o.Sluice = exe
	}
	if o.GatewayCPU == "" {
		o.GatewayCPU = DefaultGatewayCPU
	}
	if o.LoadCPU == "" {
		o.LoadCPU = DefaultLoadCPU
	}
	if o.Concurrency == nil {
		o.Concurrency = []int{1, 16, 64}
	}
	if o.StreamConcurrency == nil {
		o.StreamConcurrency = []int{1, 16}
	}
	if o.Requests == 0 {
		o.Requests = DefaultRequests
	}
	if o.MaxDuration == 0 {
		o.MaxDuration = DefaultMaxDuration
	}
	switch {
	case o.Warmup == 0:
		o.Warmup = DefaultWarmup
	case o.Warmup < 0:
		o.Warmup = 0
	}
	if o.Rounds == 0 {
		o.Rounds = DefaultRounds
	}
	if o.OutputTokens == 0 {
		o.OutputTokens = DefaultOutputTokens
	}
	for _, c := range append(append([]int(nil), o.Concurrency...), o.StreamConcurrency...) {
		if c < 1 || c > 4096 {
			return o, fmt.Errorf("concurrency %d: must be between 1 and 4096", c)
		}
	}
	switch {
	case o.Requests < 1:
		return o, errors.New("requests must be positive")
	case o.MaxDuration < 0:
		return o, errors.New("max duration must be positive")
	case o.Rounds < 1:
		return o, errors.New("rounds must be positive")
	case o.OutputTokens < 1:
		return o, errors.New("output tokens must be positive")
	}
	if !o.NoPin {
		if _, err := exec.LookPath("taskset"); err != nil {
			return o, fmt.Errorf("taskset not found (install util-linux or pass --no-pin): %w", err)
		}
	}
	return o, nil
}

// Args returns the `sluice bench` flags that reproduce a run with o, every
// value spelled out so that a later change of defaults does not change it.
func (o Options) Args() []string {
	ints := func(cs []int) string {
		s := make([]string, len(cs))
		for i, c := range cs {
			s[i] = strconv.Itoa(c)
		}
		return strings.Join(s, ",")
	}
	var a []string
	if o.NoPin {
		a = append(a, "--no-pin")
	} else {
		a = append(a, "--gateway-cpu", o.GatewayCPU, "--load-cpu", o.LoadCPU)
	}
	a = append(a,
		"--conc", ints(o.Concurrency), "--stream-conc", ints(o.StreamConcurrency),
		"--requests", strconv.Itoa(o.Requests), "--max-duration", o.MaxDuration.String(),
		"--warmup", strconv.Itoa(o.Warmup), "--rounds", strconv.Itoa(o.Rounds),
		"--output-tokens", strconv.Itoa(o.OutputTokens))
	if o.ExtraConfig != "" {
		a = append(a, "--extra-config", shellQuote(o.ExtraConfig))
	}
	if o.JSON {
		a = append(a, "--json")
	}
	return a
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ErrResponses is returned (wrapped) by Run when any response failed its
// check: the figures of such a run are not to be trusted.
var ErrResponses = errors.New("some responses failed")

// Run measures and prints the report to out: a table, or JSON if o.JSON
// (the table then goes to o.Progress, if set). It returns an error
// wrapping ErrResponses after printing if any response was wrong.
func Run(ctx context.Context, o Options, out io.Writer) error {
	r, err := Measure(ctx, o)
	if err != nil {
		return err
	}
	if o.JSON {
		if o.Progress != nil {
			if err := r.WriteTable(o.Progress); err != nil {
				return err
			}
		}
		err = r.WriteJSON(out)
	} else {
		err = r.WriteTable(out)
	}
	if err != nil {
		return err
	}
	if n := r.TotalErrors(); n > 0 {
		return fmt.Errorf("%d errors: %w", n, ErrResponses)
	}
	return nil
}

// Measure runs the benchmark and returns its report.
func Measure(ctx context.Context, o Options) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	env, err := start(ctx, o)
	if err != nil {
		return nil, err
	}
	r, err := env.run(ctx)
	if err = errors.Join(err, env.stop()); err == nil {
		env.checkLedger(ctx, r)
	}
	if cerr := env.cleanup(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

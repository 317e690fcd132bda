package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// target is one side of the comparison: where requests go and what a good
// answer looks like. Its fields are read-only once the load starts.
type target struct {
	mode   string // ModeDirect or ModeSluice
	url    string
	header http.Header // shared by every request; never written after setup
	body   []byte
	stream bool
	client *http.Client
	check  func(status int, body []byte) error
	sent   *atomic.Int64 // requests started against this target, if not nil
}

// newClient returns a client tuned for load: keep-alive with enough idle
// connections for conc workers, no proxy from the environment, no
// compression (the bodies are small and gzip would dominate the client's
// CPU).
func newClient(conc int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second, // a hung request must not hang the run
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        2 * conc,
			MaxIdleConnsPerHost: 2 * conc,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
}

// phase is the outcome of one bounded burst of load against one target.
type phase struct {
	Requests int           // requests completed, good or not
	Errors   int           // requests that failed or gave a wrong answer
	Samples  []string      // the first few error messages
	Elapsed  time.Duration // wall time from the first request to the last answer
	Latency  []time.Duration
	TTFB     []time.Duration // time to the first body byte
}

const maxSamples = 5

// merge adds q into p.
func (p *phase) merge(q phase) {
	p.Requests += q.Requests
	p.Errors += q.Errors
	for _, s := range q.Samples {
		if len(p.Samples) < maxSamples {
			p.Samples = append(p.Samples, s)
		}
	}
	p.Elapsed += q.Elapsed
	p.Latency = append(p.Latency, q.Latency...)
	p.TTFB = append(p.TTFB, q.TTFB...)
}

// run sends n requests with conc workers, each waiting for its answer
// before sending the next. Workers stop taking requests once limit has
// passed or ctx is done; requests in flight then finish (each is bounded by
// the client's timeout), so no answer is cut short by the harness.
func (t *target) run(ctx context.Context, conc, n int, limit time.Duration) phase {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		total    phase
		wg       sync.WaitGroup
		start    = time.Now()
		deadline = start.Add(limit)
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p phase
			p.Latency = make([]time.Duration, 0, n/conc+1)
			if t.stream {
				p.TTFB = make([]time.Duration, 0, n/conc+1)
			}
			buf := make([]byte, 0, 16<<10)
			for int(next.Add(1)) <= n && ctx.Err() == nil && time.Now().Before(deadline) {
				var lat, ttfb time.Duration
				var err error
				buf, lat, ttfb, err = t.do(ctx, buf)
				p.Requests++
				if err != nil {
					p.Errors++
					if len(p.Samples) < maxSamples {
						p.Samples = append(p.Samples, err.Error())
					}
					continue
				}
				p.Latency = append(p.Latency, lat)
				if t.stream {
					p.TTFB = append(p.TTFB, ttfb)
				}
			}
			mu.Lock()
			total.merge(p)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	return total
}

// do sends one request and reads the whole answer into buf.
func (t *target) do(ctx context.Context, buf []byte) ([]byte, time.Duration, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	if err != nil {
		return buf, 0, 0, err
	}
	req.Header = t.header
	if t.sent != nil {
		t.sent.Add(1)
	}
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return buf, 0, 0, err
	}
	var ttfb time.Duration
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, rerr := resp.Body.Read(buf[len(buf):cap(buf)])
		if n > 0 && ttfb == 0 {
			ttfb = time.Since(start)
		}
		buf = buf[:len(buf)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			resp.Body.Close()
			return buf, 0, 0, fmt.Errorf("read body: %w", rerr)
		}
	}
	resp.Body.Close()
	lat := time.Since(start)
	if err := t.check(resp.StatusCode, buf); err != nil {
		return buf, 0, 0, err
	}
	return buf, lat, ttfb, nil
}

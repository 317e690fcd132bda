package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// percentile returns the q-quantile (0 < q <= 1) of ds by nearest rank,
// sorting ds in place. It returns 0 for no samples.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	if !slices.IsSorted(ds) {
		slices.Sort(ds)
	}
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// metrics is one scrape of a Prometheus text exposition: sample value by
// series, the series written as in the exposition (name{labels}).
type metrics map[string]float64

// parseMetrics reads the Prometheus text format, skipping comments.
func parseMetrics(b []byte) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the series, which ends at the label set's
		// closing brace (label values may hold spaces) or the first space.
		split := strings.IndexByte(line, ' ')
		if j := strings.LastIndexByte(line, '}'); j >= 0 {
			split = j + 1
		}
		if split <= 0 || split >= len(line) {
			return nil, fmt.Errorf("malformed metrics line %q", line)
		}
		fields := strings.Fields(line[split:]) // value, then an optional timestamp
		if len(fields) == 0 {
			return nil, fmt.Errorf("malformed metrics line %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		m[strings.TrimSpace(line[:split])] = v
	}
	return m, sc.Err()
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	le    float64
	count float64
}

// histogram returns the cumulative buckets of the histogram called name
// (without labels other than le), sorted by bound.
func (m metrics) histogram(name string) []bucket {
	prefix := name + `_bucket{le="`
	var bs []bucket
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	return bs
}

// histogramDelta returns after minus before, bucket by bucket.
func histogramDelta(before, after []bucket) []bucket {
	prev := map[float64]float64{}
	for _, b := range before {
		prev[b.le] = b.count
	}
	d := make([]bucket, len(after))
	for i, b := range after {
		d[i] = bucket{b.le, b.count - prev[b.le]}
	}
	return d
}

// histogramQuantile estimates the q-quantile of cumulative buckets as
// Prometheus's histogram_quantile does: linear interpolation inside the
// bucket holding the rank, the lowest bucket starting at 0, and the highest
// finite bound for ranks in the +Inf bucket. ok is false for no
// observations.
func histogramQuantile(q float64, bs []bucket) (v float64, ok bool) {
	if len(bs) == 0 {
		return 0, false
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				if i == 0 {
					return 0, true
				}
				return bs[i-1].le, true
			}
			inBucket := b.count - below
			if inBucket <= 0 {
				return b.le, true
			}
			return lower + (b.le-lower)*(rank-below)/inBucket, true
		}
		lower, below = b.le, b.count
	}
	return bs[len(bs)-1].le, true
}

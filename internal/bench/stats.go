package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Samples collects durations and reports their percentiles. It keeps every
// sample (a few million at most in a bounded run); it is safe for
// concurrent use.
type Samples struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one sample.
func (s *Samples) Add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

// Len reports how many samples were added.
func (s *Samples) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.d)
}

// Summary is the distribution of a set of samples.
type Summary struct {
	N                  int
	P50, P90, P99, Max time.Duration
	Mean               time.Duration
}

// Summary sorts the samples and returns their percentiles (nearest rank).
func (s *Samples) Summary() Summary {
	s.mu.Lock()
	d := slices.Clone(s.d)
	s.mu.Unlock()
	return summarize(d)
}

func summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Summary{
		N:    len(d),
		P50:  percentile(d, 50),
		P90:  percentile(d, 90),
		P99:  percentile(d, 99),
		Max:  d[len(d)-1],
		Mean: sum / time.Duration(len(d)),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted d.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms renders d in milliseconds with three decimals, for JSON.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// round2 rounds x to two decimals, for JSON.
func round2(x float64) float64 { return math.Round(x*100) / 100 }

// String renders the summary for people.
func (s Summary) String() string {
	if s.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)",
		fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.Max), s.N)
}

func fmtDur(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// Load is the machine's load average (/proc/loadavg), recorded with every
// figure: the machine is shared, and a figure taken under load says so.
type Load struct{ One, Five, Fifteen float64 }

func (l Load) String() string {
	return fmt.Sprintf("%.2f %.2f %.2f", l.One, l.Five, l.Fifteen)
}

// ReadLoad reads the load average; the zero Load when it cannot.
func ReadLoad() Load {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return Load{}
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return Load{}
	}
	var l Load
	l.One, _ = strconv.ParseFloat(f[0], 64)
	l.Five, _ = strconv.ParseFloat(f[1], 64)
	l.Fifteen, _ = strconv.ParseFloat(f[2], 64)
	return l
}

// MemStatus is the process's resident memory from /proc/self/status.
type MemStatus struct {
	RSS, HWM int64 // bytes: VmRSS, and its peak VmHWM
}

// ReadMem reads VmRSS and VmHWM; zero values when it cannot.
func ReadMem() MemStatus {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return MemStatus{}
	}
	defer func() { _ = f.Close() }()
	var m MemStatus
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			m.RSS = kbField(line)
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			m.HWM = kbField(line)
		}
	}
	return m
}

func kbField(line []byte) int64 {
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n << 10
}

// ResetPeakRSS resets VmHWM to the current RSS (Linux: "5" to
// /proc/self/clear_refs). It reports whether that worked.
func ResetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// mib renders bytes in MiB with one decimal, for JSON.
func mib(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

package coordinator

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// This file is the coordinator's Prometheus instrumentation, served at leaseapi.PathMetrics
// behind the API token, on the API's listener. The counters of the copy are read from the
// queue's counters at scrape time, the same that Status is made of, so /metrics, `krsync
// status` and the final summary cannot disagree; what they do not hold (lease latency, rsync
// exit codes, re-issues, active workers) is recorded here as the ledger (lease.go) reports it.
// A registry of its own, never the global one: two coordinators in one process (tests,
// krsync local) do not collide.

// metricsNamespace prefixes every metric name.
const metricsNamespace = "krsync"

// exitCodeNone labels a failure reported without an rsync exit code (rsync did not run, or
// the worker predates the exit_code field).
const exitCodeNone = "none"

// leaseDurationBuckets span a partition of unchanged entries (tens of milliseconds) to one
// of big files on slow storage (hours).
var leaseDurationBuckets = prometheus.ExponentialBuckets(0.05, 2, 18) // 50 ms .. ~1.8 h

// metrics holds the instruments the handlers feed and the registry /metrics serves.
type metrics struct {
	registry      *prometheus.Registry
	leaseDuration *prometheus.HistogramVec // by outcome: done, failed
	rsyncExits    *prometheus.CounterVec   // by code
	reissues      prometheus.Counter

	// activeWindow is how recently a worker must have asked for a lease to count as active
	// (a long poll lasts at most MaxWait).
	activeWindow time.Duration

	mu       sync.Mutex
	leases   map[int64]grantRecord // partition → its current lease, for the latency
	lastSeen map[string]time.Time  // worker → its last lease request
}

// grantRecord is a lease handed out: which token, and when.
type grantRecord struct {
	token string
	at    time.Time
}

func newMetrics(c *Coordinator) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		leaseDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "lease_duration_seconds",
			Help:    "Time from a lease's grant to its completion or failure report, by outcome (done, failed).",
			Buckets: leaseDurationBuckets,
		}, []string{"outcome"}),
		rsyncExits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "rsync_exits_total",
			Help: "rsync runs reported by the workers, by exit code (-1: killed by a signal; none: rsync did not run).",
		}, []string{"code"}),
		reissues: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "lease_reissues_total",
			Help: "Leases granted for a partition that an earlier lease of this run did not finish (expired or failed).",
		}),
		activeWindow: c.cfg.MaxWait + 10*time.Second,
		leases:       make(map[int64]grantRecord),
		lastSeen:     make(map[string]time.Time),
	}
	m.registry.MustRegister(m.leaseDuration, m.rsyncExits, m.reissues, statusCollector{c: c, m: m})
	return m
}

// handler serves the registry in Prometheus' text format.
func (m *metrics) handler() http.HandlerFunc {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP
}

// seen records a lease request of worker.
func (m *metrics) seen(worker string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.lastSeen[worker]; !ok && len(m.lastSeen) >= maxKnownWorkers {
		m.pruneLocked(time.Now())
		if len(m.lastSeen) >= maxKnownWorkers {
			return
		}
	}
	m.lastSeen[worker] = time.Now()
}

// granted records a lease handed out.
func (m *metrics) granted(id int64, token string, attempt int) {
	if attempt > 1 {
		m.reissues.Inc()
	}
	m.mu.Lock()
	m.leases[id] = grantRecord{token: token, at: time.Now()}
	m.mu.Unlock()
}

// settled records the report that ended a lease: its latency by outcome and rsync's exit code.
func (m *metrics) settled(id int64, token, outcome, exitCode string) {
	m.rsyncExits.WithLabelValues(exitCode).Inc()
	m.leaseSettled(id, token, outcome)
}

// leaseSettled records the latency of a lease by outcome (a verify lease runs no rsync).
func (m *metrics) leaseSettled(id int64, token, outcome string) {
	m.mu.Lock()
	g, ok := m.leases[id]
	if ok && g.token == token {
		delete(m.leases, id)
	}
	m.mu.Unlock()
	if ok && g.token == token {
		m.leaseDuration.WithLabelValues(outcome).Observe(time.Since(g.at).Seconds())
	}
}

// exitCodeLabel is the label of a failure's exit code.
func exitCodeLabel(code *int) string {
	if code == nil {
		return exitCodeNone
	}
	return strconv.Itoa(*code)
}

// activeWorkers counts the workers holding a lease or that asked for one within activeWindow.
func (m *metrics) activeWorkers(holders []string) int {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	n := len(m.lastSeen)
	for _, w := range holders {
		if _, recent := m.lastSeen[w]; !recent {
			n++
		}
	}
	return n
}

func (m *metrics) pruneLocked(now time.Time) {
	for w, at := range m.lastSeen {
		if now.Sub(at) > m.activeWindow {
			delete(m.lastSeen, w)
		}
	}
}

// statusCollector turns the queue's Status into metrics at each scrape.
type statusCollector struct {
	c *Coordinator
	m *metrics
}

var (
	descPartitions    = newDesc("partitions", "Partitions by state (pending, leased, done, failed).", "state")
	descEntriesWalked = newDesc("entries_walked_total", "Entries the walk put in file partitions or left out as unchanged.")
	descBytesWalked   = newDesc("bytes_walked_total", "Bytes of the entries the walk put in file partitions or left out as unchanged.")
	descEntriesCopied = newDesc("entries_copied_total", "Entries of file partitions done (copied, or found unchanged), and those the walk left out as unchanged.")
	descBytesCopied   = newDesc("bytes_copied_total", "Bytes of the entries counted by entries_copied_total.")
	descFilesXfer     = newDesc("files_transferred_total", "Regular files whose data rsync sent (rsync --stats).")
	descBytesXfer     = newDesc("bytes_transferred_total", "Size of the files whose data rsync sent (rsync --stats).")
	descUnchanged     = newDesc("entries_unchanged_total", "Entries left out of rsync because the destination already equalled the source (by the walk, or by the workers in done partitions).")
	descVanished      = newDesc("entries_vanished_total", "Entries deleted from the source during the walk (not copied, not an error).")
	descDeleted       = newDesc("entries_deleted_total", "Destination entries --mirror deleted (in a dry run: would delete).")
	descWalkErrors    = newDesc("walk_errors_total", "Entries the walk could not read (nothing below them is copied).")
	descExpiries      = newDesc("lease_expiries_total", "Leases that expired without a renewal.")
	descActive        = newDesc("active_workers", "Workers holding a lease or that asked for one recently.")
	descWalkDone      = newDesc("walk_done", "1 once the walk has listed every entry.")
	descFinished      = newDesc("finished", "1 once every partition is done or failed.")
	descVerifyDirs    = newDesc("verify_dirs", "--verify: directories in verify leases.")
	descVerifyDone    = newDesc("verify_dirs_compared_total", "--verify: directories compared by done verify leases.")
	descVerifyDiffs   = newDesc("verify_differences_total", "--verify: differences found between the destination and the source, by kind.", "kind")
)

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "", name), help, labels, nil)
}

func (s statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPartitions, descEntriesWalked, descBytesWalked, descEntriesCopied,
		descBytesCopied, descFilesXfer, descBytesXfer, descUnchanged, descVanished, descDeleted, descWalkErrors,
		descExpiries, descActive, descWalkDone, descFinished, descVerifyDirs, descVerifyDone, descVerifyDiffs} {
		ch <- d
	}
}

func (s statusCollector) Collect(ch chan<- prometheus.Metric) {
	n := s.c.leases.q.snapshot()
	holders := s.c.leases.q.leaseHolders()
	for state, v := range map[string]int64{"pending": n.pending, "leased": n.leased, "done": n.done, "failed": n.failed} {
		ch <- prometheus.MustNewConstMetric(descPartitions, prometheus.GaugeValue, float64(v), state)
	}
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(descEntriesWalked, n.entriesWalked)
	counter(descBytesWalked, n.bytesWalked)
	counter(descEntriesCopied, n.entriesDone)
	counter(descBytesCopied, n.bytesDone)
	counter(descFilesXfer, n.filesTransferred)
	counter(descBytesXfer, n.bytesTransferred)
	counter(descUnchanged, n.unchanged)
	counter(descVanished, n.vanished)
	counter(descDeleted, n.deleted)
	counter(descWalkErrors, n.walkErrors)
	counter(descExpiries, n.expired)
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(s.m.activeWorkers(holders)))
	ch <- prometheus.MustNewConstMetric(descWalkDone, prometheus.GaugeValue, boolValue(n.walkDone))
	ch <- prometheus.MustNewConstMetric(descFinished, prometheus.GaugeValue, boolValue(n.finished))
	if v := s.c.leases.verify.status(); v != nil {
		ch <- prometheus.MustNewConstMetric(descVerifyDirs, prometheus.GaugeValue, float64(v.Dirs))
		counter(descVerifyDone, v.DirsDone)
		for kind, n := range v.ByKind {
			ch <- prometheus.MustNewConstMetric(descVerifyDiffs, prometheus.CounterValue, float64(n), kind)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

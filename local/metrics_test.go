package local_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/worker"
)

// The coordinator's /metrics, scraped over real HTTP while real workers copy with the real
// rsync, and once more after every partition settled: the text parses, the counters never
// go back, and at the end they equal the final Status and the summary Record.

// scrape GETs /metrics with the token (none when empty) and parses the answer.
func scrape(t *testing.T, base, token string) (map[string]*dto.MetricFamily, int) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+leaseapi.PathMetrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, resp.StatusCode
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: the text parser refuses /metrics: %v", err)
	}
	return families, resp.StatusCode
}

// value is the value of the family's sample whose labels include labels (name=value pairs).
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := families[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0 // a labelled counter not incremented yet
}

// counters are the metrics that must only grow during a run.
var counters = []string{
	"krsync_entries_walked_total", "krsync_bytes_walked_total", "krsync_entries_copied_total",
	"krsync_bytes_copied_total", "krsync_files_transferred_total", "krsync_bytes_transferred_total",
	"krsync_entries_unchanged_total",
}

// copyWithMetrics runs a coordinator and two real workers over src → dest, scraping /metrics
// all along, and checks the last scrape against the final status.
func copyWithMetrics(t *testing.T, rsync, src, dest string) leaseapi.Status {
	t.Helper()
	token := leaseapi.NewToken()
	opts, err := coordinator.ParsePartitioner("-zz", 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	// The walk waits until an observer has asked for a lease: the coordinator then waits for
	// it to hear "done" (or for Linger), which leaves time to scrape the finished run.
	observerKnown := make(chan struct{})
	walk := coordinator.FpartWalk(src, nil, opts)
	coord, err := coordinator.New(coordinator.Config{
		Source: src, Dest: dest, Partitioner: opts, Token: token, StateDir: t.TempDir(),
		LeaseTTL: 10 * time.Second, MaxWait: time.Second, Linger: 20 * time.Second,
		Walk: func(ctx context.Context, h coordinator.WalkHandler) error {
			select {
			case <-observerKnown:
			case <-ctx.Done():
				return ctx.Err()
			}
			return walk(ctx, h)
		},
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	client, err := leaseapi.NewClient(base, leaseapi.ClientOptions{Token: token, GiveUpAfter: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	var final leaseapi.Status
	var runErr error
	wg.Go(func() { final, runErr = coord.Run(ctx, ln) })
	if resp, err := client.Lease(ctx, "observer", 0); err != nil || resp.State != leaseapi.LeaseWait {
		t.Fatalf("observer: %+v, %v; want wait (nothing walked yet)", resp, err)
	}
	if _, code := scrape(t, base, ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d, want 401", code)
	}
	if _, code := scrape(t, base, "wrong"+token); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong token: %d, want 401", code)
	}
	close(observerKnown)
	workerErrs := make([]error, 2)
	for i := range workerErrs {
		wg.Go(func() {
			workerErrs[i] = worker.Run(ctx, worker.Config{Client: client, Name: fmt.Sprintf("w%d", i), Source: src, Dest: dest,
				RsyncBinary: rsync, Wait: time.Second}, zerolog.Nop())
		})
	}

	last := map[string]float64{}
	var sawActive bool
	for {
		families, code := scrape(t, base, token)
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		for _, name := range counters {
			v := value(t, families, name)
			if v < last[name] {
				t.Errorf("%s went back from %v to %v", name, last[name], v)
			}
			last[name] = v
		}
		sawActive = sawActive || value(t, families, "krsync_active_workers") >= 2
		if value(t, families, "krsync_finished") == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := coord.Status()
	families, _ := scrape(t, base, token)
	if !sawActive {
		t.Errorf("krsync_active_workers never counted both workers")
	}
	// Told "done", the observer lets the coordinator end before Linger.
	if resp, err := client.Lease(ctx, "observer", 0); err != nil || resp.State != leaseapi.LeaseDone {
		t.Errorf("observer after the end: %+v, %v; want done", resp, err)
	}
	wg.Wait()
	if runErr != nil {
		t.Fatalf("coordinator: %v", runErr)
	}
	for i, err := range workerErrs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	if final.Partitions != st.Partitions || final.EntriesDone != st.EntriesDone || final.FilesTransferred != st.FilesTransferred {
		t.Fatalf("the status changed after the end: %+v, then %+v", st, final)
	}

	rec := final.Record(time.Since(final.StartedAt))
	want := []struct {
		metric string
		labels []string
		want   int64
	}{
		{"krsync_entries_walked_total", nil, rec.EntriesWalked},
		{"krsync_bytes_walked_total", nil, rec.BytesWalked},
		{"krsync_entries_copied_total", nil, rec.EntriesCopied},
		{"krsync_bytes_copied_total", nil, rec.BytesCopied},
		{"krsync_files_transferred_total", nil, rec.FilesTransferred},
		{"krsync_bytes_transferred_total", nil, rec.BytesTransferred},
		{"krsync_entries_unchanged_total", nil, rec.EntriesUnchanged},
		{"krsync_entries_vanished_total", nil, rec.Vanished},
		{"krsync_entries_deleted_total", nil, rec.EntriesDeleted},
		{"krsync_walk_errors_total", nil, rec.WalkErrors},
		{"krsync_partitions", []string{"state", "done"}, rec.PartitionsDone},
		{"krsync_partitions", []string{"state", "failed"}, rec.PartitionsFailed},
		{"krsync_partitions", []string{"state", "pending"}, 0},
		{"krsync_partitions", []string{"state", "leased"}, 0},
		// Every partition was completed once, each report carrying rsync's exit code 0.
		{"krsync_rsync_exits_total", []string{"code", "0"}, final.Partitions.Done},
		{"krsync_lease_duration_seconds", []string{"outcome", "done"}, final.Partitions.Done},
		{"krsync_lease_expiries_total", nil, 0},
		{"krsync_lease_reissues_total", nil, 0},
	}
	for _, w := range want {
		if got := value(t, families, w.metric, w.labels...); got != float64(w.want) {
			t.Errorf("%s%v = %v, want %d (the final status)", w.metric, w.labels, got, w.want)
		}
	}
	if final.EntriesWalked == 0 || final.EntriesDone != final.EntriesWalked {
		t.Errorf("status %+v: want every walked entry copied", final)
	}
	return final
}

func TestMetricsEqualTheStatusOfARealRun(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dest := t.TempDir(), t.TempDir()
	for d := range 6 {
		for f := range 30 {
			p := filepath.Join(src, fmt.Sprintf("d%d", d), fmt.Sprintf("f%03d", f))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, make([]byte, 100*f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := copyWithMetrics(t, rsync, src, dest)
	if first.FilesTransferred != 180 || first.Unchanged != 0 {
		t.Errorf("first copy: %d files transferred, %d unchanged; want 180, 0", first.FilesTransferred, first.Unchanged)
	}
	// Over the finished copy the workers find every entry unchanged, and say so.
	again := copyWithMetrics(t, rsync, src, dest)
	if again.FilesTransferred != 0 || again.Unchanged != 180 {
		t.Errorf("second copy: %d files transferred, %d unchanged; want 0, 180", again.FilesTransferred, again.Unchanged)
	}
}

package bench

import (
	"os"
	"testing"

	"github.com/krsync/krsync/internal/testing/kubeplane"
)

// cluster is the test control plane of BenchmarkMigrate, started only when it runs.
var cluster kubeplane.Shared

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

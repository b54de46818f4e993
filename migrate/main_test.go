package migrate

import (
	"os"
	"testing"

	"github.com/krsync/krsync/internal/testing/kubeplane"
)

// cluster is the real control plane the tests share (started on first use).
var cluster kubeplane.Shared

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

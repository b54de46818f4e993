package local

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/krsync/krsync/coordinator"
)

// showProgress draws a bar of bytes done over bytes walked, with files in its description,
// until stop is closed. The total grows while the walk goes on.
func showProgress(coord *coordinator.Coordinator, w io.Writer, stop <-chan struct{}) {
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
	)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st := coord.Status()
		walking := ""
		if !st.WalkDone {
			walking = ", walking"
		}
		if st.BytesWalked > 0 && bar.GetMax64() != st.BytesWalked {
			bar.ChangeMax64(st.BytesWalked)
		}
		bar.Describe(fmt.Sprintf("files %d/%d, partitions %d/%d%s", st.EntriesDone, st.EntriesWalked,
			st.Partitions.Done, st.Partitions.Total, walking))
		_ = bar.Set64(st.BytesDone)
		select {
		case <-stop:
			_ = bar.Finish()
			return
		case <-tick.C:
		}
	}
}

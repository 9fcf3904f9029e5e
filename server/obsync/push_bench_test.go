package obsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opendataensemble/synkronus/server/obsync"
)

// BenchmarkPush measures clients pushing batches of 50 new observations of about 1.5 KB
// each straight into the service (no HTTP), one push after another per client: alone, and
// several at once, whose pushes share commits. cmd/synkbench measures the whole server.
func BenchmarkPush(b *testing.B) {
	for _, clients := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			s := obsync.NewService(widePool(b, int32(clients)+2), obsync.PolicyNewest)
			note := strings.Repeat("x", 1400)
			batches := make([][]json.RawMessage, b.N)
			for i := range batches {
				batches[i] = make([]json.RawMessage, 50)
				for j := range batches[i] {
					batches[i][j] = json.RawMessage(fmt.Sprintf(`{"observation_id":"obs_%d_%d","form_type":"household",
						"form_version":"1","data":{"n":%d,"note":%q},"created_at":"2025-01-01T00:00:00.000Z",
						"updated_at":"2025-01-01T00:00:00.000Z","deleted":false,"geolocation":{"latitude":1,"longitude":2}}`, i, j, j, note))
				}
			}
			var next atomic.Int64
			var failed atomic.Pointer[error]
			b.ResetTimer()
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					for i := int(next.Add(1)) - 1; i < b.N; i = int(next.Add(1)) - 1 {
						_, err := s.Push(context.Background(), obsync.PushRequest{ClientID: fmt.Sprint("c", c), TransmissionID: fmt.Sprint(i), Records: batches[i], Username: "u"})
						if err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := failed.Load(); err != nil {
				b.Fatal(*err)
			}
			b.ReportMetric(float64(50*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

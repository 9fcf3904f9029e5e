package obsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// BenchmarkPush measures one client pushing batches of 50 new observations of about
// 1.5 KB straight into the service (no HTTP). cmd/synkbench measures the whole server.
func BenchmarkPush(b *testing.B) {
	s := obsync.NewService(dbtest.NewDB(b), obsync.PolicyNewest)
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
	b.ResetTimer()
	for i := range b.N {
		_, err := s.Push(context.Background(), obsync.PushRequest{ClientID: "c", TransmissionID: fmt.Sprint(i), Records: batches[i], Username: "u"})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(50*b.N)/b.Elapsed().Seconds(), "records/s")
}

package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// observation is one record as the Formulus app pushes it (ObservationMapper.toApi).
type observation struct {
	ObservationID string          `json:"observation_id"`
	FormType      string          `json:"form_type"`
	FormVersion   string          `json:"form_version"`
	Data          json.RawMessage `json:"data"`
	CreatedAt     string          `json:"created_at"`
	UpdatedAt     string          `json:"updated_at"`
	Deleted       bool            `json:"deleted"`
	Geolocation   geolocation     `json:"geolocation"`
}

type geolocation struct {
	Latitude         float64  `json:"latitude"`
	Longitude        float64  `json:"longitude"`
	Accuracy         float64  `json:"accuracy"`
	Altitude         *float64 `json:"altitude"`
	AltitudeAccuracy *float64 `json:"altitude_accuracy"`
}

type pushRequest struct {
	TransmissionID string        `json:"transmission_id"`
	ClientID       string        `json:"client_id"`
	Records        []observation `json:"records"`
}

// pushBatch is one pre-encoded push request.
type pushBatch struct {
	body    []byte
	records int
	ids     []string // of the records, in order
}

// pushPlan holds every push request of the run, dealt round-robin to the clients.
type pushPlan struct {
	perClient       [][]pushBatch
	clientIDs       []string
	avgRecordBytes  int
	avgDataBytes    int
	avgRequestBytes int
}

// planPush generates all push requests up front, so that the generator's own work is
// not part of the measurement. The content is reproducible from o.seed.
func planPush(o options) (pushPlan, error) {
	g := &generator{rng: rand.New(rand.NewPCG(o.seed, 0x5e7b)), dataBytes: o.recordBytes}
	p := pushPlan{perClient: make([][]pushBatch, o.clients), clientIDs: make([]string, o.clients)}
	for c := range o.clients {
		p.clientIDs[c] = fmt.Sprintf("synkbench-client-%d", c)
	}
	seq := make([]int, o.clients) // next observation number per client
	var recordBytes, dataBytes, requestBytes int
	for k := 0; k*o.batch < o.pushRecords; k++ {
		c := k % o.clients
		n := min(o.batch, o.pushRecords-k*o.batch)
		req := pushRequest{TransmissionID: randomTokenFrom(g.rng.Uint64N, 16), ClientID: p.clientIDs[c], Records: make([]observation, n)}
		ids := make([]string, n)
		for i := range req.Records {
			ids[i] = fmt.Sprintf("obs_%d_%d", c, seq[c])
			req.Records[i] = g.observation(ids[i])
			seq[c]++
			dataBytes += len(req.Records[i].Data)
		}
		body, err := json.Marshal(req)
		if err != nil {
			return pushPlan{}, fmt.Errorf("error encoding a push request: %w", err)
		}
		recordBytes += len(body) - len(`{"transmission_id":"","client_id":"","records":[]}`) - len(req.TransmissionID) - len(req.ClientID) - (n - 1)
		requestBytes += len(body)
		p.perClient[c] = append(p.perClient[c], pushBatch{body: body, records: n, ids: ids})
	}
	batches := (o.pushRecords + o.batch - 1) / o.batch
	p.avgRecordBytes, p.avgDataBytes, p.avgRequestBytes = recordBytes/o.pushRecords, dataBytes/o.pushRecords, requestBytes/batches
	return p, nil
}

var (
	formTypes    = []string{"household_survey", "water_point", "crop_assessment", "health_visit"}
	villages     = []string{"Kibera", "Mwanza", "Tamale", "Gulu", "Kisumu", "Moshi", "Bo", "Mzuzu"}
	waterSources = []string{"borehole", "protected_well", "river", "piped", "rainwater"}
	crops        = []string{"maize", "beans", "cassava", "sorghum", "rice", "groundnut", "millet"}
	animals      = []string{"goat", "cattle", "chicken", "sheep", "pig"}
	names        = []string{"Amina", "Joseph", "Grace", "Kwame", "Fatuma", "Peter", "Esther", "Ibrahim"}
	noteWords    = strings.Fields("the household reported that water collection takes longer during the dry season and children help " +
		"with crops livestock were vaccinated last month enumerator observed a new latrine near the main house")
	epoch = time.Date(2026, 1, 5, 7, 30, 0, 0, time.UTC)
)

// generator makes varied, realistic form submissions.
type generator struct {
	rng       *rand.Rand
	dataBytes int
}

func (g *generator) pick(s []string) string { return s[g.rng.IntN(len(s))] }

func (g *generator) observation(id string) observation {
	created := epoch.Add(time.Duration(g.rng.Int64N(int64(30 * 24 * time.Hour))))
	updated := created.Add(time.Duration(g.rng.Int64N(int64(20 * time.Minute))))
	alt, altAcc := 1100+g.rng.Float64()*400, 3+g.rng.Float64()*10
	return observation{
		ObservationID: id,
		FormType:      g.pick(formTypes),
		FormVersion:   "1",
		Data:          g.formData(created),
		CreatedAt:     isoString(created),
		UpdatedAt:     isoString(updated),
		Geolocation: geolocation{
			Latitude: -4 + g.rng.Float64()*8, Longitude: 30 + g.rng.Float64()*10, Accuracy: 3 + g.rng.Float64()*25,
			Altitude: &alt, AltitudeAccuracy: &altAcc,
		},
	}
}

// formData returns the answers of one form, padded with free text to about g.dataBytes.
func (g *generator) formData(at time.Time) json.RawMessage {
	photoID := fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", g.rng.Uint32(), g.rng.IntN(1<<16), g.rng.IntN(1<<12), g.rng.IntN(1<<12), g.rng.Int64N(1<<48))
	livestock := make([]map[string]any, g.rng.IntN(4))
	for i := range livestock {
		livestock[i] = map[string]any{"kind": g.pick(animals), "count": 1 + g.rng.IntN(30), "vaccinated": g.rng.IntN(2) == 0}
	}
	grown := make([]string, 1+g.rng.IntN(4))
	for i := range grown {
		grown[i] = g.pick(crops)
	}
	d := map[string]any{
		"respondent": map[string]any{
			"name": g.pick(names), "age": 18 + g.rng.IntN(70), "gender": g.pick([]string{"female", "male"}),
			"phone": fmt.Sprintf("+2547%08d", g.rng.IntN(100_000_000)), "head_of_household": g.rng.IntN(2) == 0,
		},
		"village":         g.pick(villages),
		"household_size":  1 + g.rng.IntN(12),
		"consent":         true,
		"visit_date":      at.Format(time.DateOnly),
		"income_monthly":  float64(g.rng.IntN(5_000_000)) / 100,
		"water_source":    g.pick(waterSources),
		"has_electricity": g.rng.IntN(3) == 0,
		"crops":           grown,
		"livestock":       livestock,
		"photo": map[string]any{
			"id": photoID, "type": "image", "filename": photoID + ".jpg", "timestamp": at.UnixMilli(),
			"metadata": map[string]any{"width": 1920, "height": 1080, "size": 200_000 + g.rng.IntN(800_000), "mimeType": "image/jpeg"},
		},
		"notes": "",
	}
	b, _ := json.Marshal(d) // only strings, numbers, booleans, maps and slices: cannot fail
	if pad := g.dataBytes - len(b); pad > 0 {
		d["notes"] = g.words(pad)
		b, _ = json.Marshal(d)
	}
	return b
}

// words returns n bytes of lowercase prose, which JSON encodes without escapes.
func (g *generator) words(n int) string {
	var sb strings.Builder
	for sb.Len() < n {
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(g.pick(noteWords))
	}
	return sb.String()[:n]
}

// isoString formats t like JavaScript's Date.toISOString.
func isoString(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

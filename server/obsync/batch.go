package obsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"time"

	"github.com/google/uuid"

	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// stageChunkBytes is how much of a push is held in memory before it is written to
// push_staging: one chunk (and the record being read) is all of a push in memory. It is
// also the most the push's write carries itself.
const stageChunkBytes = 256 << 10

// Batch is the records of one push, written to PostgreSQL (push_staging) in chunks as they
// are added, so that a push is never held in memory whole; only what deciding needs of
// each record stays here, and the last chunk, which the push's write carries itself (so a
// small push, the usual one, is never staged at all). Close removes the staged records once
// the push has ended.
type Batch struct {
	s        *Service
	id       uuid.UUID
	n        int
	hash     hash.Hash // of the records as sent, to tell a replay from a reused transmission_id
	records  []candidate
	failed   []FailedRecord
	warnings []Warning
	chunk    []dbgen.PushStagingInsertParams // the records not staged (yet)
	size     int                             // bytes in chunk
	staged   bool                            // rows were written to push_staging
	cleared  bool                            // the push's write deleted them
}

// candidate is what deciding needs of a record that can be stored; the rest of it waits
// in push_staging.
type candidate struct {
	index         int
	id            string
	updatedAt     time.Time
	updatedAtText string
	hash          [32]byte
	baseVersion   *int64
}

// NewBatch starts the records of a push.
func (s *Service) NewBatch() *Batch {
	return &Batch{s: s, id: uuid.New(), hash: sha256.New()}
}

// Len returns the number of records added.
func (b *Batch) Len() int { return b.n }

// Add validates the next record of the push, which must be valid JSON (decoding the
// request body checked that once for the whole body), and stages it. Only a database error
// is returned: a record that cannot be stored is noted for the answer and the quarantine.
func (b *Batch) Add(ctx context.Context, raw json.RawMessage) error {
	idx := b.n
	b.n++
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(raw)))
	b.hash.Write(n[:])
	b.hash.Write(raw)

	var meta []byte // none for a record that cannot be stored
	var extra string
	rec, rerr := parseValidJSON(raw)
	if rerr != nil {
		b.failed = append(b.failed, FailedRecord{Index: idx, ObservationID: PeekID(raw), Code: rerr.Code, Error: rerr.Message})
	} else {
		b.records = append(b.records, candidate{index: idx, id: rec.ObservationID, updatedAt: rec.UpdatedAt,
			updatedAtText: rec.UpdatedAtText, hash: rec.Hash, baseVersion: rec.BaseVersion})
		for _, w := range rec.Warnings {
			w.index = idx
			b.warnings = append(b.warnings, w)
		}
		var err error
		if meta, err = rec.meta(); err != nil {
			return err
		}
		extra = string(rec.Extra)
	}
	b.chunk = append(b.chunk, dbgen.PushStagingInsertParams{BatchID: b.id, Idx: int32(idx), Raw: bytes.Clone(raw), Meta: meta, Extra: extra})
	b.size += len(raw)
	if b.size >= stageChunkBytes {
		return b.flush(ctx)
	}
	return nil
}

// flush writes the records held in memory to push_staging.
func (b *Batch) flush(ctx context.Context) error {
	if len(b.chunk) == 0 {
		return nil
	}
	b.staged = true
	if _, err := b.s.q.PushStagingInsert(ctx, b.chunk); err != nil {
		return fmt.Errorf("error staging pushed records: %w", err)
	}
	clear(b.chunk) // let the records go
	b.chunk, b.size = b.chunk[:0], 0
	return nil
}

// inline returns the records not staged, as ObservationWriteBatch takes them.
func (b *Batch) inline() (idxs []int32, raws, metas [][]byte, extras []string) {
	for _, r := range b.chunk {
		idxs, raws, metas, extras = append(idxs, r.Idx), append(raws, r.Raw), append(metas, r.Meta), append(extras, r.Extra)
	}
	return idxs, raws, metas, extras
}

// Close removes the batch's records from push_staging unless the push's write did; call
// it once the push has ended, whatever the outcome. It runs even when ctx was cancelled.
// Rows it fails to remove are removed later by the server's cleanup job.
func (b *Batch) Close(ctx context.Context) error {
	if !b.staged || b.cleared {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := b.s.q.PushStagingDelete(ctx, b.id); err != nil {
		return fmt.Errorf("error removing staged records: %w", err)
	}
	return nil
}

// stagedMeta is what ObservationWriteBatch reads of a staged record besides its text:
// the validated members, and where data and geolocation lie in the text.
type stagedMeta struct {
	ObservationID string   `json:"observation_id"`
	FormType      string   `json:"form_type"`
	FormVersion   string   `json:"form_version"`
	Author        *string  `json:"author"`
	DeviceID      *string  `json:"device_id"`
	Tags          []string `json:"tags"` // null for no tags, [] for empty ones
	CreatedAt     string   `json:"created_at"`
	CreatedAtText string   `json:"created_at_text"`
	UpdatedAt     string   `json:"updated_at"`
	UpdatedAtText string   `json:"updated_at_text"`
	Deleted       bool     `json:"deleted"`
	ContentHash   string   `json:"content_hash"`
	DataAt        int      `json:"data_at"`
	DataLen       int      `json:"data_len"`
	GeoAt         *int     `json:"geo_at,omitempty"`
	GeoLen        int      `json:"geo_len,omitempty"`
}

func (r *Record) meta() ([]byte, error) {
	m := stagedMeta{
		ObservationID: r.ObservationID, FormType: r.FormType, FormVersion: r.FormVersion,
		Author: r.Author, DeviceID: r.DeviceID, Tags: r.Tags,
		CreatedAt: r.CreatedAt.UTC().Format(time.RFC3339Nano), CreatedAtText: r.CreatedAtText,
		UpdatedAt: r.UpdatedAt.UTC().Format(time.RFC3339Nano), UpdatedAtText: r.UpdatedAtText,
		Deleted: r.Deleted, ContentHash: hex.EncodeToString(r.Hash[:]),
		DataAt: r.DataAt, DataLen: len(r.Data),
	}
	if r.Geolocation != nil {
		m.GeoAt, m.GeoLen = &r.GeolocationAt, len(r.Geolocation)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("error encoding a staged record: %w", err)
	}
	return b, nil
}

package obsync

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"time"

	"github.com/google/uuid"

	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// stageChunkBytes is how much of a push is held in memory before it is written to
// push_staging: one chunk (and the record being read) is all of a push in memory.
const stageChunkBytes = 256 << 10

// Batch is the records of one push with what validation read from each, in the columns the
// write stores. A push that fits in one chunk (most do) is held in memory and sent with
// the group write that stores it. A larger one is written to PostgreSQL (push_staging) in
// chunks as its records are added, so that it is never held in memory whole (only what
// deciding needs of each record stays here), and the write reads it from there; Close
// removes those staged records once the push has ended.
type Batch struct {
	s        *Service
	id       uuid.UUID
	n        int
	bytes    int       // of the records as sent
	hash     hash.Hash // of the records as sent, to tell a replay from a reused transmission_id
	records  []candidate
	failed   []FailedRecord
	warnings []Warning
	chunk    []dbgen.PushStagingInsertParams // the records not staged yet; all of them while !staged
	text     []byte                          // the text of chunk's records, one after another
	spans    []span                          // where each record of chunk lies in text
	size     int                             // bytes in chunk
	staged   bool                            // rows were written to push_staging
	cleared  bool                            // the push's write stored the records (and deleted any it staged)
}

// span is where a record and its data and geolocation lie in Batch.text (geoLen is 0
// when it has none), and its tags as JSON (nil when it has none) for the group write.
type span struct {
	at, n, dataAt, dataLen, geoAt, geoLen int32
	tags                                  []byte
}

// shift is sp for the batch's text placed at base in a longer text.
func (sp span) shift(base int32) span {
	sp.at, sp.dataAt = sp.at+base, sp.dataAt+base
	if sp.geoLen > 0 {
		sp.geoAt += base
	}
	return sp
}

// candidate is what deciding needs of a record that can be stored; the rest of it is in
// the batch's chunk or in push_staging.
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

// Expect makes room for a push body of n bytes (its Content-Length, when the client sent
// one), so that the text held in memory is not copied again as it grows: up to a chunk,
// as a larger push is staged chunk by chunk.
func (b *Batch) Expect(n int64) {
	if n > 0 && len(b.text) == 0 {
		b.text = make([]byte, 0, min(n, stageChunkBytes))
	}
}

// Len returns the number of records added.
func (b *Batch) Len() int { return b.n }

// Stored reports whether the push's write stored the batch: false after a push that
// failed, and after a push that was a replay of a stored transmission (answered from its
// receipt, writing nothing).
func (b *Batch) Stored() bool { return b.cleared }

// Add validates the next record of the push, which must be valid JSON (decoding the
// request body checked that once for the whole body), and keeps it in the chunk, which is
// staged once it is full. Only a database error
// is returned: a record that cannot be stored is noted for the answer and the quarantine.
func (b *Batch) Add(ctx context.Context, raw json.RawMessage) error {
	idx := b.n
	b.n++
	b.bytes += len(raw)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(raw)))
	b.hash.Write(n[:])
	b.hash.Write(raw)

	row := dbgen.PushStagingInsertParams{BatchID: b.id, Idx: int32(idx)}
	at := int32(len(b.text))
	b.text = append(b.text, raw...)
	sp := span{at: at, n: int32(len(raw))}
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
		rec.stage(&row)
		sp.dataAt, sp.dataLen = at+int32(rec.DataAt), int32(len(rec.Data))
		if rec.Geolocation != nil {
			sp.geoAt, sp.geoLen = at+int32(rec.GeolocationAt), int32(len(rec.Geolocation))
		}
		if rec.Tags != nil {
			sp.tags, _ = json.Marshal(rec.Tags) // []string always encodes
		}
	}
	b.chunk = append(b.chunk, row)
	b.spans = append(b.spans, sp)
	b.size += len(raw)
	if b.size >= stageChunkBytes {
		return b.flush(ctx)
	}
	return nil
}

// finish makes the batch ready to write once every record was added: a batch that was
// staged stages the last of its records too, as the write reads them all from there; one
// that never grew past a chunk stays in memory.
func (b *Batch) finish(ctx context.Context) error {
	if !b.staged {
		return nil
	}
	return b.flush(ctx)
}

// flush writes the records held in memory to push_staging.
func (b *Batch) flush(ctx context.Context) error {
	if len(b.chunk) == 0 {
		return nil
	}
	b.staged = true
	for i, sp := range b.spans {
		row := &b.chunk[i]
		row.Raw = b.text[sp.at : sp.at+sp.n]
		if row.ObservationID != nil { // a record that can be stored
			row.Data = b.text[sp.dataAt : sp.dataAt+sp.dataLen]
		}
		if sp.geoLen > 0 {
			row.Geolocation = b.text[sp.geoAt : sp.geoAt+sp.geoLen]
		}
	}
	if _, err := b.s.q.PushStagingInsert(ctx, b.chunk); err != nil {
		return fmt.Errorf("error staging pushed records: %w", err)
	}
	clear(b.chunk) // let the records go
	b.chunk, b.text, b.spans, b.size = b.chunk[:0], b.text[:0], b.spans[:0], 0
	return nil
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

// stage fills in what push_staging keeps of a valid record besides its text (the record
// as sent, its data and its geolocation, which Batch keeps in its text).
func (r *Record) stage(row *dbgen.PushStagingInsertParams) {
	row.ObservationID, row.FormType, row.FormVersion = &r.ObservationID, &r.FormType, &r.FormVersion
	row.Author, row.DeviceID, row.Tags = r.Author, r.DeviceID, r.Tags
	row.RecordCreatedAt, row.CreatedAtText = &r.CreatedAt, &r.CreatedAtText
	row.RecordUpdatedAt, row.UpdatedAtText = &r.UpdatedAt, &r.UpdatedAtText
	row.Deleted, row.ContentHash = &r.Deleted, r.Hash[:]
	row.Extra = string(r.Extra)
}

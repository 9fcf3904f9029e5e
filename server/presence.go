package server

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// presenceEvent is one sighting of a user's client.
type presenceEvent struct {
	UserID      uuid.UUID `json:"user_id"`
	ClientID    string    `json:"client_id"`
	SeenAt      time.Time `json:"last_seen_at"`
	DataVersion *int64    `json:"last_data_version,omitempty"`
	BundleVer   *string   `json:"app_bundle_version,omitempty"`
	OdeVersion  *string   `json:"last_ode_version,omitempty"`
}

// presenceRecorder records last-seen information without slowing requests: events are
// merged in memory per (user, client) and written in one statement per flush. If the
// database is slow the merge simply grows no larger than the number of active clients.
type presenceRecorder struct {
	q   *dbgen.Queries
	log *slog.Logger

	mu      sync.Mutex
	pending map[presenceKey]presenceEvent
}

type presenceKey struct {
	user   uuid.UUID
	client string
}

const (
	presenceFlushEvery = 2 * time.Second
	presenceMaxPending = 50000
)

func newPresenceRecorder(q *dbgen.Queries, log *slog.Logger) *presenceRecorder {
	return &presenceRecorder{q: q, log: log, pending: make(map[presenceKey]presenceEvent)}
}

func (p *presenceRecorder) record(e presenceEvent) {
	// One value PostgreSQL cannot store would fail the whole flush: such a client id
	// is not recorded, and such a version hint is dropped.
	if unstorable(e.ClientID) != "" {
		return
	}
	if e.OdeVersion != nil && unstorable(*e.OdeVersion) != "" {
		e.OdeVersion = nil
	}
	if e.BundleVer != nil && unstorable(*e.BundleVer) != "" {
		e.BundleVer = nil
	}
	if e.SeenAt.IsZero() {
		e.SeenAt = time.Now().UTC()
	}
	if len(e.ClientID) > 255 {
		e.ClientID = strings.ToValidUTF8(e.ClientID[:255], "") // never half a character
	}
	k := presenceKey{e.UserID, e.ClientID}
	p.mu.Lock()
	defer p.mu.Unlock()
	old, ok := p.pending[k]
	if !ok && len(p.pending) >= presenceMaxPending {
		return // shed load rather than grow without bound
	}
	if ok {
		e.DataVersion = cmp.Or(e.DataVersion, old.DataVersion)
		e.BundleVer = cmp.Or(e.BundleVer, old.BundleVer)
		e.OdeVersion = cmp.Or(e.OdeVersion, old.OdeVersion)
		if old.SeenAt.After(e.SeenAt) {
			e.SeenAt = old.SeenAt
		}
	}
	p.pending[k] = e
}

// middleware records every authenticated API request under its x-ode-client-id.
func (p *presenceRecorder) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if pr, ok := principalFrom(c.Request().Context()); ok {
			e := presenceEvent{UserID: pr.UserID, ClientID: c.Request().Header.Get("X-Ode-Client-Id")}
			if v := c.Request().Header.Get("X-Ode-Version"); v != "" && c.Request().Header.Get(legacyHeader) == "" {
				v = strings.TrimSpace(v)
				e.OdeVersion = &v
			}
			p.record(e)
		}
		return err
	}
}

// run flushes periodically until ctx ends, then once more.
func (p *presenceRecorder) run(ctx context.Context) {
	t := time.NewTicker(presenceFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			p.flush(flushCtx)
			cancel()
			return
		case <-t.C:
			p.flush(ctx)
		}
	}
}

func (p *presenceRecorder) flush(ctx context.Context) {
	p.mu.Lock()
	if len(p.pending) == 0 {
		p.mu.Unlock()
		return
	}
	events := make([]presenceEvent, 0, len(p.pending))
	for _, e := range p.pending {
		events = append(events, e)
	}
	clear(p.pending)
	p.mu.Unlock()
	// A fixed order keeps concurrent flushes of several processes from deadlocking.
	slices.SortFunc(events, func(a, b presenceEvent) int {
		if c := strings.Compare(a.UserID.String(), b.UserID.String()); c != 0 {
			return c
		}
		return strings.Compare(a.ClientID, b.ClientID)
	})
	body, err := json.Marshal(events)
	if err == nil {
		err = p.q.PresenceUpsertBatch(ctx, body)
	}
	if err != nil {
		p.log.WarnContext(ctx, "could not record presence", "error", err, "events", len(events))
	}
}

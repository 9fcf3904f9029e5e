package server

import (
	"context"
	"log/slog"
	"sync"
)

// requestFacts are what a request's log lines say about its client, learnt as the request
// is served: the client id arrives in a header or only inside the body.
type requestFacts struct {
	mu       sync.Mutex
	clientID string
}

// maxLoggedClientID bounds the client id copied into the log.
const maxLoggedClientID = 255

// setClientID notes the client id a request carries, for every log line of the request.
func setClientID(ctx context.Context, id string) {
	f, ok := ctx.Value(ctxKeyFacts).(*requestFacts)
	if !ok || id == "" {
		return
	}
	if len(id) > maxLoggedClientID {
		id = id[:maxLoggedClientID]
	}
	f.mu.Lock()
	f.clientID = id
	f.mu.Unlock()
}

func clientIDFrom(ctx context.Context) string {
	f, ok := ctx.Value(ctxKeyFacts).(*requestFacts)
	if !ok {
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clientID
}

// requestLogHandler adds to every record logged with a request's context the request id,
// the authenticated user and the client id, so that any line can be traced to its request
// and device without each call site repeating them.
type requestLogHandler struct{ slog.Handler }

func (h requestLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(ctxKeyRequestID).(string); ok && id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if p, ok := principalFrom(ctx); ok {
		r.AddAttrs(slog.String("user", p.Username))
	}
	if id := clientIDFrom(ctx); id != "" {
		r.AddAttrs(slog.String("client_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestLogHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestLogHandler) WithGroup(name string) slog.Handler {
	return requestLogHandler{h.Handler.WithGroup(name)}
}

package obsync

import (
	"bytes"
	"fmt"
	"time"
)

// Policy decides which side of a conflict becomes the stored state. Whichever loses is kept
// in the revision history, so no policy loses data.
type Policy string

// The conflict policies.
const (
	// PolicyNewest keeps the copy with the newest client updated_at; on equal timestamps
	// the copy with the greater content hash wins, so every server decides the same way.
	PolicyNewest Policy = "newest"
	// PolicyIncoming lets the write that arrives last win (upstream's behaviour).
	PolicyIncoming Policy = "incoming"
	// PolicyStored keeps what the server has; a stale write never replaces it.
	PolicyStored Policy = "stored"
)

// ParsePolicy reads a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyNewest, PolicyIncoming, PolicyStored:
		return p, nil
	}
	return "", fmt.Errorf("unknown conflict policy %q (want newest, incoming or stored)", s)
}

// head is what conflict resolution needs of the current state of an observation.
// UpdatedAt is read from the client's text, not from the timestamptz column: PostgreSQL
// keeps microseconds, the text may carry nanoseconds, and two writes within a microsecond
// must still be told apart, the same way whether the other copy is stored or pending.
type head struct {
	Version       int64 // 0 while it is only a pending write of the same push
	UpdatedAt     time.Time
	UpdatedAtText string
	Hash          [32]byte
}

// decision is the outcome for one incoming record.
type decision int

const (
	decideUnchanged decision = iota // identical content: nothing to write, no version
	decideWrite                     // the record becomes the stored state
	decideReject                    // the record lost a conflict and goes to the history only
)

// decide applies the policy to an incoming record and the current state (nil when the
// observation is new). conflict is true when the record was based on an out-of-date copy:
// an updated_at older than the stored one, an equal updated_at with other content, or a
// base_version older than the stored version while the content differs.
func (p Policy) decide(in *candidate, cur *head) (d decision, conflict bool) {
	if cur == nil {
		return decideWrite, false
	}
	if in.hash == cur.Hash {
		return decideUnchanged, false
	}
	cmp := in.updatedAt.Compare(cur.UpdatedAt)
	baseStale := in.baseVersion != nil && cur.Version > 0 && *in.baseVersion < cur.Version
	if cmp > 0 && !baseStale {
		return decideWrite, false
	}
	incomingWins := false
	switch p {
	case PolicyIncoming:
		incomingWins = true
	case PolicyStored:
		incomingWins = false
	default:
		incomingWins = cmp > 0 || (cmp == 0 && bytes.Compare(in.hash[:], cur.Hash[:]) > 0)
	}
	if incomingWins {
		return decideWrite, true
	}
	return decideReject, true
}

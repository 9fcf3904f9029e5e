package attachments

import (
	"errors"
	"fmt"

	"github.com/opendataensemble/synkronus/server/blobstore"
)

// MaxIDBytes bounds the length of an attachment id: ids name a directory of the local
// blob store, and file systems refuse longer names.
const MaxIDBytes = 255

// ErrInvalidID reports an attachment id outside the allowed alphabet, length or names.
var ErrInvalidID = errors.New("invalid attachment id")

// reservedIDs are the names of the static routes beside /attachments/{id}: the router
// sends other methods on them to the id route, so an attachment with such an id could be
// stored but never downloaded.
var reservedIDs = map[string]bool{"manifest": true, "export-zip": true}

// CheckID accepts ids of 1 to MaxIDBytes bytes that make one segment of a blob key
// (blobstore.ValidSegment: letters, digits, '.', '_' and '-', not "." and not ending in
// "..") other than the reserved names. Such an id is a safe file name and URL segment
// everywhere it is used (blob keys, download URLs, ZIP entries).
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: the id is empty", ErrInvalidID)
	case len(id) > MaxIDBytes:
		return fmt.Errorf("%w: the id is longer than %d bytes", ErrInvalidID, MaxIDBytes)
	case reservedIDs[id]:
		return fmt.Errorf("%w: %q is reserved", ErrInvalidID, id)
	case !blobstore.ValidSegment(id):
		return fmt.Errorf("%w: %q may hold only letters, digits, '.', '_' and '-', and may be neither \".\" nor end with \"..\"", ErrInvalidID, id)
	}
	return nil
}

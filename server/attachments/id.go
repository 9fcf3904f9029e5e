package attachments

import (
	"errors"
	"fmt"
	"strings"
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

// CheckID accepts ids of 1 to MaxIDBytes letters, digits, '.', '_' and '-', not ending in
// ".." (which covers "." and "..": the file blob store would keep such a segment of a key
// outside its directory) and other than the reserved names. Such an id is a safe file
// name and URL segment everywhere it is used (blob keys, download URLs, ZIP entries).
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: the id is empty", ErrInvalidID)
	case len(id) > MaxIDBytes:
		return fmt.Errorf("%w: the id is longer than %d bytes", ErrInvalidID, MaxIDBytes)
	case id == ".":
		return fmt.Errorf("%w: %q is not a file name", ErrInvalidID, id)
	case strings.HasSuffix(id, ".."):
		return fmt.Errorf("%w: %q ends with \"..\"", ErrInvalidID, id)
	case reservedIDs[id]:
		return fmt.Errorf("%w: %q is reserved", ErrInvalidID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q may hold only letters, digits, '.', '_' and '-'", ErrInvalidID, id)
		}
	}
	return nil
}

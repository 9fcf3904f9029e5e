package export

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Form types and observation ids are free text, while the archive's entries must be file
// names every operating system accepts: unzipping must never write outside its folder,
// fail, or silently overwrite one file with another.
const (
	// maxNameBytes keeps a name, with its extension, under the 255-byte limit of common
	// file systems.
	maxNameBytes  = 200
	hashSuffixLen = 12
)

// fileName encodes s as one path segment: bytes that are unsafe in a file name on some
// system (controls, / \ : * ? " < > |, and % itself) are percent-encoded, and so are a
// leading or trailing dot or space (Windows drops those; "." and ".." are paths) and the
// first letter of a Windows device name (CON, NUL, COM1, ...). Distinct inputs give
// distinct names, except that a name longer than maxNameBytes is cut and ends in a hash
// of the whole input.
func fileName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		edge := (i == 0 || i == len(s)-1) && (c == '.' || c == ' ')
		if c < 0x20 || c == 0x7f || strings.IndexByte(`/\:*?"<>|%`, c) >= 0 || edge || (i == 0 && isDeviceName(s)) {
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	name := b.String()
	if name == "" {
		return "%00" // the empty form type; no other input encodes to this
	}
	if len(name) <= maxNameBytes {
		return name
	}
	cut := maxNameBytes - hashSuffixLen - 1
	for cut > 0 && (!utf8.RuneStart(name[cut]) || name[cut-1] == '%' || (cut > 1 && name[cut-2] == '%')) {
		cut--
	}
	sum := sha256.Sum256([]byte(s))
	return name[:cut] + "~" + hex.EncodeToString(sum[:])[:hashSuffixLen]
}

// isDeviceName reports a name Windows reserves whatever its extension.
func isDeviceName(s string) bool {
	base, _, _ := strings.Cut(strings.ToUpper(s), ".")
	base = strings.TrimRight(base, " ")
	switch base {
	case "CON", "PRN", "AUX", "NUL":
		return true
	}
	return len(base) == 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) && base[3] >= '1' && base[3] <= '9'
}

// formFileNames gives each form type of an export its own file name, also on the file
// systems that ignore case (Windows, macOS), where "Visit" and "visit" would be one file.
type formFileNames struct {
	used map[string]bool // lower-cased names given so far
}

func (n *formFileNames) next(formType string) string {
	if n.used == nil {
		n.used = map[string]bool{}
	}
	base := fileName(formType)
	name := base
	for i := 2; n.used[strings.ToLower(name)]; i++ {
		name = base + "~" + strconv.Itoa(i)
	}
	n.used[strings.ToLower(name)] = true
	return name
}

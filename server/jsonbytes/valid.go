package jsonbytes

// MaxDepth is how deeply arrays and objects may nest in a value that Scan accepts, as
// encoding/json allows.
const MaxDepth = 10000

// Status is what Scan found.
type Status int

const (
	// Complete: a whole valid value.
	Complete Status = iota
	// Incomplete: the text ends inside a value that is valid so far; more text may complete it.
	Incomplete
	// Invalid: the text is not JSON (or nests deeper than MaxDepth).
	Invalid
)

// Scan checks the JSON value starting at b[i] (after any whitespace) and returns the index
// just after it. It accepts exactly what encoding/json accepts (strings are not checked to
// be valid UTF-8), in one pass and without allocating. When final is false, a number that
// reaches the end of b is Incomplete, since more digits may follow. On Invalid, the index is
// that of the offending byte, or len(b) for a number that the end of b cuts short.
func Scan(b []byte, i int, final bool) (int, Status) {
	s := scanner{b: b, final: final}
	return s.value(SkipSpace(b, i), 0)
}

// Valid reports whether b is exactly one JSON value, with optional whitespace around it.
func Valid(b []byte) bool {
	end, st := Scan(b, 0, true)
	return st == Complete && SkipSpace(b, end) == len(b)
}

type scanner struct {
	b     []byte
	final bool
}

func (s *scanner) value(i, depth int) (int, Status) {
	b := s.b
	if i >= len(b) {
		return i, Incomplete
	}
	switch c := b[i]; {
	case c == '"':
		return s.str(i)
	case c == '{':
		return s.object(i, depth+1)
	case c == '[':
		return s.array(i, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number(i)
	case c == 't':
		return s.literal(i, "true")
	case c == 'f':
		return s.literal(i, "false")
	case c == 'n':
		return s.literal(i, "null")
	}
	return i, Invalid
}

func (s *scanner) object(i, depth int) (int, Status) {
	if depth > MaxDepth {
		return i, Invalid
	}
	b := s.b
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, Complete
	}
	for {
		if i >= len(b) {
			return i, Incomplete
		}
		if b[i] != '"' {
			return i, Invalid
		}
		var st Status
		if i, st = s.str(i); st != Complete {
			return i, st
		}
		if i = SkipSpace(b, i); i >= len(b) {
			return i, Incomplete
		}
		if b[i] != ':' {
			return i, Invalid
		}
		if i, st = s.value(SkipSpace(b, i+1), depth); st != Complete {
			return i, st
		}
		if i = SkipSpace(b, i); i >= len(b) {
			return i, Incomplete
		}
		switch b[i] {
		case '}':
			return i + 1, Complete
		case ',':
			i = SkipSpace(b, i+1)
		default:
			return i, Invalid
		}
	}
}

func (s *scanner) array(i, depth int) (int, Status) {
	if depth > MaxDepth {
		return i, Invalid
	}
	b := s.b
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, Complete
	}
	for {
		var st Status
		if i, st = s.value(i, depth); st != Complete {
			return i, st
		}
		if i = SkipSpace(b, i); i >= len(b) {
			return i, Incomplete
		}
		switch b[i] {
		case ']':
			return i + 1, Complete
		case ',':
			i = SkipSpace(b, i+1)
		default:
			return i, Invalid
		}
	}
}

func (s *scanner) str(i int) (int, Status) {
	b := s.b
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, Complete
		case c < 0x20:
			return j, Invalid
		case c == '\\':
			j++
			if j >= len(b) {
				return j, Incomplete
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for k := 0; k < 4; k++ {
					j++
					if j >= len(b) {
						return j, Incomplete
					}
					if !isHex(b[j]) {
						return j, Invalid
					}
				}
			default:
				return j, Invalid
			}
		}
	}
	return len(b), Incomplete
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number(i int) (int, Status) {
	b := s.b
	j := i
	if b[j] == '-' {
		j++
	}
	// end answers for a number that reaches the end of b: incomplete unless the text is
	// final, when it is complete if it may end there (ok).
	end := func(ok bool) (int, Status) {
		if !s.final {
			return j, Incomplete
		}
		if ok {
			return j, Complete
		}
		return j, Invalid
	}
	digits := func() bool { // one or more
		if j >= len(b) || b[j] < '0' || b[j] > '9' {
			return false
		}
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return true
	}
	if j >= len(b) {
		return end(false)
	}
	switch {
	case b[j] == '0':
		j++
	case b[j] >= '1' && b[j] <= '9':
		digits()
	default:
		return j, Invalid
	}
	if j >= len(b) {
		return end(true)
	}
	if b[j] == '.' {
		j++
		if !digits() {
			if j >= len(b) {
				return end(false)
			}
			return j, Invalid
		}
		if j >= len(b) {
			return end(true)
		}
	}
	if b[j] == 'e' || b[j] == 'E' {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if !digits() {
			if j >= len(b) {
				return end(false)
			}
			return j, Invalid
		}
		if j >= len(b) {
			return end(true)
		}
	}
	return j, Complete
}

func (s *scanner) literal(i int, lit string) (int, Status) {
	b := s.b
	for k := 0; k < len(lit); k++ {
		if i+k >= len(b) {
			return i + k, Incomplete
		}
		if b[i+k] != lit[k] {
			return i + k, Invalid
		}
	}
	return i + len(lit), Complete
}

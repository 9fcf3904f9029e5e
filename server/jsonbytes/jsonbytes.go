// Package jsonbytes works on JSON text as bytes. It locates values inside text already
// known to be valid JSON (pushed records, form data read back from PostgreSQL) without
// decoding or copying it, which keeps number literals exactly as they were sent and costs
// no allocation, and it appends strings as JSON. Scan and Reader check text as
// encoding/json does, Reader reading it from a stream one value at a time.
//
// The other scanning functions do not validate: on invalid input they stop at the end of
// the text.
package jsonbytes

import "unicode/utf8"

// SkipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// StringEnd returns the index just after the string starting at b[i] == '"'.
func StringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// ValueEnd returns the index just after the value starting at b[i].
func ValueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return StringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = StringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

// Members calls fn with the key (as written, still escaped, without its quotes) and the
// value text of each member of the object at b[i] == '{', in order, and returns the index
// just after the object.
func Members(b []byte, i int, fn func(key, value []byte)) int {
	i++
	for {
		i = SkipSpace(b, i)
		if i >= len(b) {
			return i
		}
		if b[i] != '"' {
			return i + 1 // the closing brace
		}
		keyEnd := StringEnd(b, i)
		key := b[i+1 : max(keyEnd-1, i+1)]
		i = SkipSpace(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return i
		}
		i = SkipSpace(b, i+1)
		end := ValueEnd(b, i)
		if end <= i {
			return end
		}
		fn(key, b[i:end])
		i = SkipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping only what JSON requires; invalid
// UTF-8 becomes U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

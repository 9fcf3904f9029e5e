package obsync

import (
	"encoding/json"
	"strings"
)

// member is one member of a JSON object: its name, and where its key and value lie in the
// object's text.
type member struct {
	name     string // unescaped
	keyStart int    // index of the key's opening quote
	valStart int
	valEnd   int // just after the value
}

// eachMember calls fn for every member of obj, a JSON object known to be valid JSON, in
// order. It only locates where each key and value start and end, without decoding or
// copying: on the push path this replaces further passes of encoding/json over every
// record (the body was already checked as a whole).
func eachMember(obj []byte, fn func(m member)) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return
		}
		keyStart := i
		keyEnd := stringEnd(obj, i)
		i = skipSpace(obj, keyEnd)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		i = skipSpace(obj, i+1)
		end := valueEnd(obj, i)
		if end <= i {
			return
		}
		fn(member{name: keyName(obj[keyStart+1 : max(keyEnd-1, keyStart+1)]), keyStart: keyStart, valStart: i, valEnd: end})
		i = skipSpace(obj, end)
		if i < len(obj) && obj[i] == ',' {
			i++
		}
	}
}

// keyName unescapes a key's text (without its quotes).
func keyName(key []byte) string {
	if strings.IndexByte(string(key), '\\') < 0 { // the conversion does not allocate here
		return string(key)
	}
	var name string
	if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &name) != nil {
		return string(key)
	}
	return name
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just after the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
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

// valueEnd returns the index just after the value starting at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
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

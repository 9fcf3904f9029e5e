package obsync

import (
	"encoding/json"
	"strings"
)

// splitRecord finds the members of a record, a JSON object known to be valid JSON. It
// only locates where each value starts and ends, without decoding or copying: on the push
// path this replaces two further passes of encoding/json over every record (the body was
// already validated as a whole). Keys are matched exactly; a repeated key keeps its last
// value, as encoding/json does.
func splitRecord(raw []byte) wireRecord {
	var w wireRecord
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return w
	}
	i++
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] != '"' {
			return w
		}
		keyEnd := stringEnd(raw, i)
		key := raw[i+1 : max(keyEnd-1, i+1)]
		i = skipSpace(raw, keyEnd)
		if i >= len(raw) || raw[i] != ':' {
			return w
		}
		i = skipSpace(raw, i+1)
		end := valueEnd(raw, i)
		if end <= i {
			return w
		}
		if field := w.field(key); field != nil {
			*field = raw[i:end]
		}
		i = skipSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i++
		}
	}
}

func (w *wireRecord) field(key []byte) *json.RawMessage {
	name := string(key) // does not allocate in the switch below
	if strings.IndexByte(name, '\\') >= 0 {
		var unescaped string
		if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &unescaped) != nil {
			return nil
		}
		name = unescaped
	}
	switch name {
	case "observation_id":
		return &w.ObservationID
	case "form_type":
		return &w.FormType
	case "form_version":
		return &w.FormVersion
	case "data":
		return &w.Data
	case "created_at":
		return &w.CreatedAt
	case "updated_at":
		return &w.UpdatedAt
	case "deleted":
		return &w.Deleted
	case "geolocation":
		return &w.Geolocation
	case "author":
		return &w.Author
	case "device_id":
		return &w.DeviceID
	case "tags":
		return &w.Tags
	case "base_version":
		return &w.BaseVersion
	}
	return nil
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

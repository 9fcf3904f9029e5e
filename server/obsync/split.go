package obsync

import (
	"encoding/json"
	"strings"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
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
	i := jsonbytes.SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i++
	for {
		i = jsonbytes.SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return
		}
		keyStart := i
		keyEnd := jsonbytes.StringEnd(obj, i)
		i = jsonbytes.SkipSpace(obj, keyEnd)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		i = jsonbytes.SkipSpace(obj, i+1)
		end := jsonbytes.ValueEnd(obj, i)
		if end <= i {
			return
		}
		fn(member{name: keyName(obj[keyStart+1 : max(keyEnd-1, keyStart+1)]), keyStart: keyStart, valStart: i, valEnd: end})
		i = jsonbytes.SkipSpace(obj, end)
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

package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// bodyReader is a request body type that reads the body itself (streambody.JSON).
type bodyReader interface{ SetReader(io.Reader) }

// jsonSerializer is Echo's JSON serializer, except that a body type that reads the body
// itself gets the body's reader instead of a decoded value. The generated strict handlers
// decode every JSON body through it.
type jsonSerializer struct{ echo.DefaultJSONSerializer }

func (s jsonSerializer) Deserialize(c echo.Context, i any) error {
	if b, ok := i.(bodyReader); ok {
		b.SetReader(c.Request().Body)
		return nil
	}
	return s.DefaultJSONSerializer.Deserialize(c, i)
}

// pushEnvelope is what a push request says besides its records. A nil member was absent
// or null.
type pushEnvelope struct {
	TransmissionID *string
	ClientID       *string
	Generation     *int64
	Records        bool // records was an array
}

// badPushBody is a push body that is not a JSON object of the contract's shape.
type badPushBody string

func (e badPushBody) Error() string { return string(e) }

// readPush reads a push body as it arrives. onRecord gets each element of records in turn,
// its text as sent (valid JSON, and only valid until onRecord returns), so that the records
// are never all in memory; the other members are returned. Member names match exactly.
// A body of the wrong shape is a badPushBody; an error of onRecord or of the reader (such
// as *http.MaxBytesError) is returned as it is.
func readPush(r io.Reader, onRecord func(json.RawMessage) error) (pushEnvelope, error) {
	var env pushEnvelope
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{', "the request body must be a JSON object"); err != nil {
		return env, err
	}
	seen := map[string]bool{}
	var raw json.RawMessage // reused for every value: records are read one at a time
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return env, syntaxError(err)
		}
		key := tok.(string) // dec.More and the opening brace guarantee a key here
		if seen[key] {
			return env, badPushBody(fmt.Sprintf("the member %q appears more than once", key))
		}
		seen[key] = true
		switch key {
		case "transmission_id", "client_id":
			s, err := readText(dec, &raw, key)
			if err != nil {
				return env, err
			}
			if key == "client_id" {
				env.ClientID = s
			} else {
				env.TransmissionID = s
			}
		case "repository_generation":
			if err := dec.Decode(&raw); err != nil {
				return env, syntaxError(err)
			}
			if string(raw) != "null" {
				var g int64
				if json.Unmarshal(raw, &g) != nil || g < 1 {
					return env, badPushBody("repository_generation must be an integer of at least 1")
				}
				env.Generation = &g
			}
		case "records":
			if env.Records, err = readRecords(dec, &raw, onRecord); err != nil {
				return env, err
			}
		default:
			if err := dec.Decode(&raw); err != nil { // a member the contract does not name
				return env, syntaxError(err)
			}
		}
	}
	if err := expectDelim(dec, '}', "the request body must be a JSON object"); err != nil {
		return env, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			return env, badPushBody("the request body holds more than one JSON value")
		}
		return env, syntaxError(err)
	}
	return env, nil
}

// readRecords reads the value of records: null (reported as false) or an array, whose
// elements go to onRecord.
func readRecords(dec *json.Decoder, raw *json.RawMessage, onRecord func(json.RawMessage) error) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, syntaxError(err)
	}
	if tok == nil {
		return false, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return false, badPushBody("records must be an array")
	}
	for dec.More() {
		if err := dec.Decode(raw); err != nil {
			return false, syntaxError(err)
		}
		if err := onRecord(*raw); err != nil {
			return false, err
		}
	}
	return true, expectDelim(dec, ']', "records must be an array")
}

// readText reads a string member; nil when it is null.
func readText(dec *json.Decoder, raw *json.RawMessage, key string) (*string, error) {
	if err := dec.Decode(raw); err != nil {
		return nil, syntaxError(err)
	}
	if string(*raw) == "null" {
		return nil, nil
	}
	var s string
	if (*raw)[0] != '"' || json.Unmarshal(*raw, &s) != nil {
		return nil, badPushBody(key + " must be a string")
	}
	if !utf8.Valid(*raw) {
		return nil, badPushBody(key + " must be valid UTF-8")
	}
	return &s, nil
}

func expectDelim(dec *json.Decoder, want json.Delim, detail string) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return badPushBody(detail)
	}
	return nil
}

// syntaxError turns a decoding error into a badPushBody, except the reader's own errors
// (a body over its size limit, a connection that broke), which are returned as they are.
func syntaxError(err error) error {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		return badPushBody("the request body is not valid JSON: " + syntax.Error())
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badPushBody("the request body ends before its JSON value does")
	}
	return err
}

package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
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
	rd := jsonbytes.NewReader(r)
	if err := expect(rd, '{', "the request body must be a JSON object"); err != nil {
		return env, err
	}
	seen := map[string]bool{}
	for first := true; ; first = false {
		if done, err := nextItem(rd, '}', first); err != nil || done {
			if err != nil {
				return env, err
			}
			break
		}
		keyText, err := rd.Value()
		if err != nil {
			return env, syntaxError(err)
		}
		var key string
		if keyText[0] != '"' || json.Unmarshal(keyText, &key) != nil {
			return env, notJSON(rd)
		}
		if seen[key] {
			return env, badPushBody(fmt.Sprintf("the member %q appears more than once", key))
		}
		seen[key] = true
		if err := expect(rd, ':', ""); err != nil {
			return env, err
		}
		switch key {
		case "transmission_id", "client_id":
			s, err := readText(rd, key)
			if err != nil {
				return env, err
			}
			if key == "client_id" {
				env.ClientID = s
			} else {
				env.TransmissionID = s
			}
		case "repository_generation":
			raw, err := rd.Value()
			if err != nil {
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
			if env.Records, err = readRecords(rd, onRecord); err != nil {
				return env, err
			}
		default:
			if _, err := rd.Value(); err != nil { // a member the contract does not name
				return env, syntaxError(err)
			}
		}
	}
	switch _, err := rd.Peek(); {
	case errors.Is(err, io.EOF):
		return env, nil
	case err != nil:
		return env, err
	}
	if _, err := rd.Value(); err != nil {
		return env, syntaxError(err)
	}
	return env, badPushBody("the request body holds more than one JSON value")
}

// readRecords reads the value of records: null (reported as false) or an array, whose
// elements go to onRecord.
func readRecords(rd *jsonbytes.Reader, onRecord func(json.RawMessage) error) (bool, error) {
	c, err := rd.Peek()
	if errors.Is(err, io.EOF) {
		err = jsonbytes.ErrUnexpectedEnd
	}
	if err != nil {
		return false, syntaxError(err)
	}
	if c != '[' {
		raw, err := rd.Value()
		switch {
		case err != nil:
			return false, syntaxError(err)
		case string(raw) == "null":
			return false, nil
		}
		return false, badPushBody("records must be an array")
	}
	_, _ = rd.Consume('[')
	for first := true; ; first = false {
		if done, err := nextItem(rd, ']', first); err != nil || done {
			return done, err
		}
		raw, err := rd.Value()
		if err != nil {
			return false, syntaxError(err)
		}
		if err := onRecord(raw); err != nil {
			return false, err
		}
	}
}

// readText reads a string member; nil when it is null.
func readText(rd *jsonbytes.Reader, key string) (*string, error) {
	raw, err := rd.Value()
	if err != nil {
		return nil, syntaxError(err)
	}
	if string(raw) == "null" {
		return nil, nil
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return nil, badPushBody(key + " must be a string")
	}
	if !utf8.Valid(raw) {
		return nil, badPushBody(key + " must be valid UTF-8")
	}
	return &s, nil
}

// nextItem starts the next item of an object or array: it reports done when the list
// ends (close is consumed), and reads the comma before any item but the first.
func nextItem(rd *jsonbytes.Reader, close byte, first bool) (done bool, err error) {
	end, err := rd.Consume(close)
	switch {
	case err != nil:
		return false, syntaxError(err)
	case end:
		return true, nil
	case !first:
		return false, expect(rd, ',', "")
	}
	return false, nil
}

// expect consumes the byte want. Anything else is a badPushBody: detail when it is given
// and the text is JSON so far, else a syntax error.
func expect(rd *jsonbytes.Reader, want byte, detail string) error {
	ok, err := rd.Consume(want)
	switch {
	case err != nil:
		return syntaxError(err)
	case ok:
		return nil
	case detail != "":
		if _, err := rd.Value(); err != nil {
			return syntaxError(err)
		}
		return badPushBody(detail)
	}
	return notJSON(rd)
}

// notJSON is the error for text that is not JSON at the reader's next byte.
func notJSON(rd *jsonbytes.Reader) error {
	c, _ := rd.Peek()
	return syntaxError(&jsonbytes.SyntaxError{Offset: rd.Offset(), Byte: c})
}

// syntaxError turns a reading error into a badPushBody, except the reader's own errors
// (a body over its size limit, a connection that broke), which are returned as they are.
// It returns nil for nil.
func syntaxError(err error) error {
	var syntax *jsonbytes.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &syntax):
		return badPushBody("the request body is not valid JSON: " + syntax.Error())
	case errors.Is(err, jsonbytes.ErrUnexpectedEnd):
		return badPushBody("the request body ends before its JSON value does")
	}
	return err
}

package jsonbytes

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// validCases are texts on the edges of the grammar; encoding/json is the reference.
var validCases = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `-`, `01`, `1.`, `1.5`, `.5`, `1e`, `1e+`, `1e+5`, `1E-05`,
	`-1.25e3`, `1.e3`, `2x`, `true`, `tru`, `trues`, `false`, `null`, `nul`, `NaN`, `Infinity`,
	`"\u00e9"`, `"\u00zz"`, `"\x"`, `"\/\b\f\n\r\t\"\\"`, "\"\t\"", "\"\x01\"", "\"\xff\xfe\"",
	`"unterminated`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a" 1}`, `{"a":}`, `{1:2}`, `{"a":1}}`,
	`[[[]]]`, ` {"a" : [ 1 , {"b":null} ] } `, `{"a":1} {"b":2}`, "[1,\n2]", `{"":""}`,
}

// deepCases nest as deeply as encoding/json allows, and once more.
var deepCases = []string{
	strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth),
	strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
	strings.Repeat(`{"a":`, MaxDepth) + "1" + strings.Repeat("}", MaxDepth),
	strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1),
}

func TestValidAgreesWithEncodingJSON(t *testing.T) {
	for _, c := range append(validCases, deepCases...) {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.40q) = %v, encoding/json says %v", c, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := json.Valid(b)
		if got := Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
		// Read as a stream, one byte at a time, the same text is one value exactly when
		// it is valid.
		rd := NewReader(iotest.OneByteReader(bytes.NewReader(b)))
		v, err := rd.Value()
		if want {
			if err != nil || !bytes.Equal(v, bytes.TrimSpace(b)) {
				t.Fatalf("Value of %q = %q, %v", b, v, err)
			}
			if _, err := rd.Peek(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the value of %q: %v, want io.EOF", b, err)
			}
		} else if err == nil {
			if _, err := rd.Peek(); errors.Is(err, io.EOF) {
				t.Fatalf("Value of invalid %q = %q and nothing after it", b, v)
			}
		}
	})
}

// TestReaderValues reads a stream of values as the push body reader does, through a reader
// that hands out a few bytes at a time, with values larger than the reader's buffer.
func TestReaderValues(t *testing.T) {
	big := `"` + strings.Repeat("x", 3*minRead) + `"`
	text := ` {"records": [` + big + `, 12, {"a": [1, 2.5e3]}, null] , "n": -7 } `
	rd := NewReader(iotest.HalfReader(strings.NewReader(text)))
	var got []string
	step := func(want byte) {
		t.Helper()
		if ok, err := rd.Consume(want); !ok || err != nil {
			t.Fatalf("Consume(%q) = %v, %v at byte %d", want, ok, err, rd.Offset())
		}
	}
	value := func() {
		t.Helper()
		v, err := rd.Value()
		if err != nil {
			t.Fatalf("Value: %v", err)
		}
		got = append(got, string(v))
	}
	step('{')
	value()
	step(':')
	step('[')
	for i := 0; i < 4; i++ {
		if i > 0 {
			step(',')
		}
		value()
	}
	step(']')
	step(',')
	value()
	step(':')
	value()
	step('}')
	if _, err := rd.Peek(); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
	want := []string{`"records"`, big, `12`, `{"a": [1, 2.5e3]}`, `null`, `"n"`, `-7`}
	if len(got) != len(want) {
		t.Fatalf("got %d values, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("value %d = %.40q, want %.40q", i, got[i], want[i])
		}
	}
}

func TestReaderErrors(t *testing.T) {
	for _, c := range []struct {
		text string
		want error
	}{
		{`[1, 2`, ErrUnexpectedEnd},
		{`"abc`, ErrUnexpectedEnd},
		{``, ErrUnexpectedEnd},
		{`[1 x]`, &SyntaxError{}},
		{`{"a":01}`, &SyntaxError{}},
	} {
		_, err := NewReader(strings.NewReader(c.text)).Value()
		var syntax *SyntaxError
		if !(errors.Is(err, c.want) || (errors.As(c.want, &syntax) && errors.As(err, &syntax))) {
			t.Errorf("Value of %q: %v, want %v", c.text, err, c.want)
		}
	}
	broken := errors.New("connection reset")
	_, err := NewReader(io.MultiReader(strings.NewReader(`{"a": [`), iotest.ErrReader(broken))).Value()
	if !errors.Is(err, broken) {
		t.Errorf("a stream that fails: %v, want its error", err)
	}
}

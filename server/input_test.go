package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// unstorable are the byte sequences PostgreSQL text cannot hold. Each is appended to a
// valid value; in a JSON body the NUL travels as the escape \u0000 (a raw NUL is not
// JSON) and the invalid UTF-8 as the raw byte.
var unstorable = []struct{ name, raw, inJSON string }{
	{"NUL", "\x00", `\u0000`},
	{"invalid UTF-8", "\xff", "\xff"},
}

// textLenient lists where the contract lets text through that a 4xx would cost a device
// its data: the records of a push are judged one by one by the sync service (a bad
// record is reported or kept aside, the others stored), and the push body is not
// checked for UTF-8 as a whole. There the answer must only not be a server error.
func textLenient(operationID, field, bad string) bool {
	return operationID == "syncPush" && (strings.HasPrefix(field, "records") || bad == "invalid UTF-8")
}

// exampleValue builds a valid value of a schema, marking the position of every string
// with a placeholder so that a test can swap in bad text; texts collects the placeholders
// with the field names they stand for.
func exampleValue(s *openapi3.Schema, field string, texts map[string]string) any {
	switch {
	case s.Type.Is("object"):
		obj := map[string]any{}
		for name, p := range s.Properties {
			sub := name
			if field != "" {
				sub = field + "." + name
			}
			obj[name] = exampleValue(p.Value, sub, texts)
		}
		return obj
	case s.Type.Is("array"):
		return []any{exampleValue(s.Items.Value, field+"[0]", texts)}
	case s.Type.Is("integer"), s.Type.Is("number"):
		if s.Min != nil && *s.Min > 1 {
			return *s.Min
		}
		return 1
	case s.Type.Is("boolean"):
		return false
	case s.Type.Is("string"):
		base := "x"
		switch {
		case len(s.Enum) > 0:
			base = fmt.Sprint(s.Enum[0])
		case s.Format == "date-time":
			base = "2026-01-02T03:04:05.678Z"
		}
		marker := fmt.Sprintf("@@text%d@@", len(texts))
		texts[marker] = field
		return base + marker
	}
	return map[string]any{}
}

// inputCase is one request of the table: an operation with one text input spoiled (or
// none, for the base request).
type inputCase struct {
	field    string // the spoiled input
	bad      string // what spoiled it
	inBody   bool
	op       *openapi3.Operation
	method   string
	path     string // with its parameters filled in
	query    url.Values
	header   map[string]string
	body     []byte
	bodyType string
}

// textInputs builds, from the contract, a valid request for the operation and one
// variant per text input (path, query and header parameter, JSON body field) carrying
// each unstorable sequence.
func textInputs(t *testing.T, path, method string, op *openapi3.Operation) (base inputCase, variants map[string]inputCase) {
	t.Helper()
	params := map[string]*openapi3.Parameter{}
	for _, p := range op.Parameters {
		params[p.Value.In+":"+p.Value.Name] = p.Value
	}
	valid := func(p *openapi3.Parameter) string {
		switch {
		case p.Name == "x-ode-version":
			return servertest.Version
		case p.Schema.Value.Example != nil:
			return fmt.Sprint(p.Schema.Value.Example)
		case p.Schema.Value.Format == "date-time":
			return "2026-01-02T03:04:05Z"
		case p.Schema.Value.Type.Is("string"):
			return "x"
		case p.Schema.Value.Type.Is("boolean"):
			return "false"
		}
		return "1"
	}
	build := func(spoil string, bad string) inputCase {
		c := inputCase{op: op, method: method, query: url.Values{}, header: map[string]string{}}
		filled := path
		for key, p := range params {
			if p.Schema == nil {
				continue
			}
			v := valid(p)
			if key == spoil {
				v += bad
			}
			switch p.In {
			case openapi3.ParameterInPath:
				filled = strings.ReplaceAll(filled, "{"+p.Name+"}", url.PathEscape(v))
			case openapi3.ParameterInQuery:
				c.query.Set(p.Name, v)
			case openapi3.ParameterInHeader:
				c.header[p.Name] = v
			}
		}
		c.path = filled
		return c
	}

	base = build("", "")
	variants = map[string]inputCase{}
	for key, p := range params {
		if p.Schema == nil || !p.Schema.Value.Type.Is("string") {
			continue
		}
		for _, u := range unstorable {
			if p.In == openapi3.ParameterInHeader && u.raw == "\x00" {
				continue // no HTTP client can send it, and net/http refuses it itself
			}
			v := build(key, u.raw)
			v.field, v.bad = p.Name, u.name
			variants[fmt.Sprintf("%s %s with %s", p.In, p.Name, u.name)] = v
		}
	}

	if op.RequestBody == nil {
		return base, variants
	}
	content := op.RequestBody.Value.Content
	if mt := content.Get("application/json"); mt != nil {
		texts := map[string]string{}
		doc, err := json.Marshal(exampleValue(mt.Schema.Value, "", texts))
		require.NoError(t, err)
		clean := doc
		for marker := range texts {
			clean = bytes.ReplaceAll(clean, []byte(marker), nil)
		}
		base.body, base.bodyType = clean, "application/json"
		for key, v := range variants {
			v.body, v.bodyType = clean, "application/json"
			variants[key] = v
		}
		for marker, field := range texts {
			for _, u := range unstorable {
				v := build("", "")
				v.body = bytes.ReplaceAll(doc, []byte(marker), []byte(u.inJSON))
				for other := range texts {
					v.body = bytes.ReplaceAll(v.body, []byte(other), nil)
				}
				v.bodyType = "application/json"
				v.field, v.bad, v.inBody = field, u.name, true
				variants[fmt.Sprintf("body field %s with %s", field, u.name)] = v
			}
		}
	}
	if mt := content.Get("multipart/form-data"); mt != nil {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		names := make([]string, 0, len(mt.Schema.Value.Properties))
		for name := range mt.Schema.Value.Properties {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			part, err := w.CreateFormFile(name, "file.bin")
			require.NoError(t, err)
			_, _ = part.Write([]byte("x"))
		}
		require.NoError(t, w.Close())
		for key, v := range variants {
			v.body, v.bodyType = buf.Bytes(), w.FormDataContentType()
			variants[key] = v
		}
		base.body, base.bodyType = buf.Bytes(), w.FormDataContentType()
	}
	return base, variants
}

func (c inputCase) request(token string) servertest.Request {
	r := servertest.Request{Method: c.method, Path: c.path, Header: map[string]string{}, NoVersion: true}
	if q := c.query.Encode(); q != "" {
		r.Path += "?" + q
	}
	if c.op.Security != nil && len(*c.op.Security) > 0 {
		r.Token = token // the admin may call every operation
	}
	for k, v := range c.header {
		r.Header[k] = v
	}
	if c.body != nil {
		r.Body = c.body
		r.Header["Content-Type"] = c.bodyType
	}
	return r
}

// rawStatus sends a request without checking the answer against the contract and returns
// its status.
func rawStatus(t *testing.T, env *servertest.Env, r servertest.Request) int {
	t.Helper()
	var body io.Reader
	if b, ok := r.Body.([]byte); ok {
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(r.Method, env.HTTP.URL+r.Path, body)
	require.NoError(t, err)
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	res, err := env.HTTP.Client().Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode
}

// Every text input of every operation of the contract reaches PostgreSQL only when it
// can be stored: a NUL or invalid UTF-8 in any parameter or body field is a 400 naming
// the field (426 for the version header), never a 500. The table is built from the
// contract, so an operation added later is covered without touching this test.
func TestUnstorableTextIsRefusedEverywhere(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	spec, err := api.GetSwagger()
	require.NoError(t, err)

	checked := 0
	for _, path := range spec.Paths.InMatchingOrder() {
		for method, op := range spec.Paths.Value(path).Operations() {
			base, variants := textInputs(t, path, method, op)
			status := rawStatus(t, env, base.request(admin))
			// A file built from the contract is one byte: an upload whose content is judged
			// (an app bundle must be a zip) may refuse it, which is no refusal of its text.
			judgesFile := op.RequestBody != nil && op.RequestBody.Value.Content.Get("multipart/form-data") != nil
			require.True(t, status < 500 && (status != http.StatusBadRequest || judgesFile),
				"%s: the valid request built from the contract answered %d", op.OperationID, status)

			names := slices.Sorted(func(yield func(string) bool) {
				for name := range variants {
					if !yield(name) {
						return
					}
				}
			})
			for _, name := range names {
				v := variants[name]
				res := env.Do(v.request(admin))
				switch {
				case textLenient(op.OperationID, v.field, v.bad):
					require.Less(t, res.Status, 500, "%s %s: %s", op.OperationID, name, res.Body)
				case v.field == "x-ode-version":
					require.Equal(t, http.StatusUpgradeRequired, res.Status, "%s %s: %s", op.OperationID, name, res.Body)
				default:
					require.Equal(t, http.StatusBadRequest, res.Status, "%s %s: %s", op.OperationID, name, res.Body)
					if method == http.MethodHead {
						break
					}
					// The field, or for a body that is not UTF-8 at all, the body.
					want := v.field
					if v.inBody && v.bad == "invalid UTF-8" {
						want = "body is not valid UTF-8"
					}
					require.Contains(t, requireProblem(t, res, http.StatusBadRequest, "validation_failed").Detail, want, "%s %s", op.OperationID, name)
				}
				checked++
			}
		}
	}
	require.Greater(t, checked, 100, "the table covers the contract's text inputs")
	t.Logf("%d requests with unstorable text", checked)
}

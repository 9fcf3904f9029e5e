// Package servertest runs the whole server against a fresh PostgreSQL database for tests,
// and checks every response the tests receive against the contract.
package servertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/blobstore/blobstoretest"
	"github.com/opendataensemble/synkronus/server/passwords"
)

// Version is the x-ode-version the test client sends.
const Version = "1.0.0"

// AdminPassword is the password of the admin account every Env starts with.
const AdminPassword = "admin-password-for-tests"

// Env is a running server on its own database.
type Env struct {
	T      testing.TB
	Pool   *pgxpool.Pool
	Server *server.Server
	HTTP   *httptest.Server
	Hasher *passwords.Hasher
	// BlobURL is the bucket the server keeps its files in.
	BlobURL string
	Blobs   *blobstore.Store
	// SigningKey is the key the server signs access tokens with.
	SigningKey []byte
	// Logs holds what the server logged at info level and above.
	Logs   *Logs
	router routers.Router
}

// Logs collects a server's log records as decoded JSON objects.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends log output: the server's JSON log handler writes here.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Records returns every record logged so far whose attributes include all of match.
func (l *Logs) Records(match map[string]any) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(l.buf.Bytes()))
	for {
		var rec map[string]any
		if dec.Decode(&rec) != nil {
			return out
		}
		matches := true
		for k, v := range match {
			matches = matches && rec[k] == v
		}
		if matches {
			out = append(out, rec)
		}
	}
}

// New starts a server on a fresh migrated database with an admin account "admin".
// opts may adjust the server options.
func New(t testing.TB, opts ...func(*server.Options)) *Env {
	t.Helper()
	pool := dbtest.NewDB(t)
	return NewOnPool(t, pool, opts...)
}

// NewOnPool is New on an existing database (to run several servers on one database), with
// files in a fresh local-directory bucket.
func NewOnPool(t testing.TB, pool *pgxpool.Pool, opts ...func(*server.Options)) *Env {
	t.Helper()
	return NewWithBlobs(t, pool, blobstoretest.FileURL(t), opts...)
}

// NewWithBlobs is NewOnPool with files in the bucket at blobURL (see blobstoretest for the
// backends tests run on).
func NewWithBlobs(t testing.TB, pool *pgxpool.Pool, blobURL string, opts ...func(*server.Options)) *Env {
	t.Helper()
	blobs, err := blobstore.Open(context.Background(), blobURL)
	if err != nil {
		t.Fatalf("error opening blob bucket: %v", err)
	}
	t.Cleanup(func() { _ = blobs.Close() })
	hasher := passwords.NewHasher(4, 4) // bcrypt.MinCost keeps tests fast
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var o server.Options
	for _, f := range opts {
		f(&o)
	}
	logs := &Logs{}
	handlers := []slog.Handler{slog.NewJSONHandler(logs, nil)}
	if testing.Verbose() {
		handlers = append(handlers, slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	log := slog.New(slog.NewMultiHandler(handlers...))
	key = sharedKey(pool, key)
	srv, err := server.New(server.Deps{Pool: pool, Log: log, Hasher: hasher, SigningKey: key, Blobs: blobs}, o)
	if err != nil {
		t.Fatalf("error creating server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bg := srv.Start(ctx)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); cancel(); bg.Wait() })

	spec, err := api.GetSwagger()
	if err != nil {
		t.Fatalf("error loading spec: %v", err)
	}
	spec.Servers = nil
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		t.Fatalf("error building spec router: %v", err)
	}
	e := &Env{T: t, Pool: pool, Server: srv, HTTP: hs, Hasher: hasher, BlobURL: blobURL, Blobs: blobs, SigningKey: key, Logs: logs, router: router}
	e.ensureAdmin()
	return e
}

// keys remembers one signing key per database, so that several servers on one database
// accept each other's tokens, as processes sharing the stored key do.
var keys sync.Map

func sharedKey(pool *pgxpool.Pool, fresh []byte) []byte {
	k, _ := keys.LoadOrStore(pool.Config().ConnString(), fresh)
	return k.([]byte)
}

func (e *Env) ensureAdmin() {
	hash, err := e.Hasher.Hash(context.Background(), AdminPassword)
	if err != nil {
		e.T.Fatalf("error hashing: %v", err)
	}
	_, _ = dbgen.New(e.Pool).UserCreateIfNoneExist(context.Background(), dbgen.UserCreateIfNoneExistParams{Username: "admin", PasswordHash: hash})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Response is a received response whose conformance to the contract was checked.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test when it is not JSON.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response body is not the expected JSON (%v): %s", err, r.Body)
	}
}

// Map decodes the body as a JSON object.
func (r *Response) Map(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// Request describes one call. Body may be nil, a []byte/string (sent as is) or any value
// (sent as JSON). Version defaults to the test client's x-ode-version; set NoVersion to
// send none.
type Request struct {
	Method    string
	Path      string
	Token     string
	Body      any
	Header    map[string]string
	NoVersion bool
}

// Do sends the request and checks the response against the contract: its status must be
// declared for the operation and its headers and body must match the declared schema.
func (e *Env) Do(r Request) *Response {
	e.T.Helper()
	var body io.Reader
	switch b := r.Body.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(b)
	case string:
		body = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.T.Fatalf("error encoding request: %v", err)
		}
		body = bytes.NewReader(j)
	}
	req, err := http.NewRequest(r.Method, e.HTTP.URL+r.Path, body)
	if err != nil {
		e.T.Fatalf("error building request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !r.NoVersion {
		req.Header.Set("X-Ode-Version", Version)
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	res, err := e.HTTP.Client().Do(req)
	if err != nil {
		e.T.Fatalf("error sending %s %s: %v", r.Method, r.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.T.Fatalf("error reading response: %v", err)
	}
	out := &Response{Status: res.StatusCode, Header: res.Header, Body: b}
	e.validate(req, out)
	return out
}

// validate fails the test when the response does not conform to the contract. Requests
// to the root paths of older clients are checked as the /api operation they map to.
func (e *Env) validate(req *http.Request, res *Response) {
	e.T.Helper()
	vreq := req.Clone(context.Background())
	vreq.Body = http.NoBody
	// The server folds repeated slashes of the path as sent; an encoded slash (%2F) is part
	// of a segment and stays.
	if vreq.URL.RawPath == "" {
		vreq.URL.Path = foldSlashes(vreq.URL.Path)
	} else {
		vreq.URL.RawPath = foldSlashes(vreq.URL.RawPath)
		if p, err := url.PathUnescape(vreq.URL.RawPath); err == nil {
			vreq.URL.Path = p
		}
	}
	p := vreq.URL.Path
	if p != "/" && p != "/health" && !strings.HasPrefix(p, "/api/") && p != "/openapi/synkronus.yaml" && p != "/docs" {
		vreq.URL.Path = "/api" + p
		if vreq.URL.RawPath != "" {
			vreq.URL.RawPath = "/api" + vreq.URL.RawPath
		}
	}
	if vreq.URL.Path != "/" {
		vreq.URL.Path = strings.TrimSuffix(vreq.URL.Path, "/")
	}
	route, params, err := e.router.FindRoute(vreq)
	if err != nil {
		if res.Status == http.StatusNotFound || res.Status == http.StatusMethodNotAllowed || !strings.HasPrefix(vreq.URL.Path, "/api/") && vreq.URL.Path != "/health" && vreq.URL.Path != "/" {
			return // not an operation of the contract
		}
		e.T.Fatalf("no operation in the contract for %s %s: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route},
		Status:                 res.Status,
		Header:                 res.Header,
		Body:                   io.NopCloser(bytes.NewReader(res.Body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		e.T.Fatalf("%s %s answered %d, which the contract does not allow: %v\nbody: %s", req.Method, req.URL.Path, res.Status, err, truncate(res.Body))
	}
}

func foldSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

func truncate(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// Login logs in and returns the access token, failing the test otherwise.
func (e *Env) Login(username, password string) string {
	e.T.Helper()
	res := e.Do(Request{Method: http.MethodPost, Path: "/api/auth/login", Body: map[string]string{"username": username, "password": password}})
	if res.Status != http.StatusOK {
		e.T.Fatalf("login as %s: %d %s", username, res.Status, res.Body)
	}
	var auth api.AuthResponse
	res.JSON(e.T, &auth)
	return auth.Token
}

// AdminToken logs in as the admin.
func (e *Env) AdminToken() string { return e.Login("admin", AdminPassword) }

// CreateUser creates a user with the given role (through the API, as the admin) and returns
// a token for it.
func (e *Env) CreateUser(username, role string) string {
	e.T.Helper()
	res := e.Do(Request{Method: http.MethodPost, Path: "/api/users/create", Token: e.AdminToken(),
		Body: map[string]string{"username": username, "password": "pw-" + username, "role": role}})
	if res.Status != http.StatusCreated {
		e.T.Fatalf("create user %s: %d %s", username, res.Status, res.Body)
	}
	return e.Login(username, "pw-"+username)
}

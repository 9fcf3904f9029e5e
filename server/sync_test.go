package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/obsync"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// syncObservation builds one observation as Formulus sends it (ids like obs_<ms>_<n>,
// Date.toISOString() timestamps); extra holds further `"key": value` members.
func syncObservation(id, updatedAt, data string, extra ...string) string {
	s := fmt.Sprintf(`{"observation_id":%q,"form_type":"household","form_version":"1","data":%s,`+
		`"created_at":"2025-12-01T10:11:12.345Z","updated_at":%q,"deleted":false`, id, data, updatedAt)
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

var transmissionSeq atomic.Int64

// newTransmissionID returns a fresh 16-character [0-9a-z] id, the shape Formulus sends.
func newTransmissionID() string {
	return fmt.Sprintf("tx%014s", strconv.FormatInt(transmissionSeq.Add(1), 36))
}

// syncDevice is one Formulus install: a user's token and a client id.
type syncDevice struct {
	t        *testing.T
	env      *servertest.Env
	token    string
	clientID string
	cursor   int64
	data     map[string]pulledObservation // the device's copy, built from pulls
}

func newSyncDevice(t *testing.T, env *servertest.Env, token, clientID string) *syncDevice {
	return &syncDevice{t: t, env: env, token: token, clientID: clientID, data: map[string]pulledObservation{}}
}

// pulledObservation is a pulled record with the client-owned JSON kept as raw text.
type pulledObservation struct {
	ObservationID string          `json:"observation_id"`
	FormType      string          `json:"form_type"`
	FormVersion   string          `json:"form_version"`
	Data          json.RawMessage `json:"data"`
	CreatedAt     string          `json:"created_at"`
	UpdatedAt     string          `json:"updated_at"`
	SyncedAt      *string         `json:"synced_at"`
	Deleted       bool            `json:"deleted"`
	Version       int64           `json:"version"`
	Geolocation   json.RawMessage `json:"geolocation"`
	Author        *string         `json:"author"`
	DeviceID      *string         `json:"device_id"`
	Tags          []string        `json:"tags"`
}

type pulledPage struct {
	CurrentVersion       int64               `json:"current_version"`
	RepositoryGeneration int64               `json:"repository_generation"`
	ChangeCutoff         int64               `json:"change_cutoff"`
	HasMore              bool                `json:"has_more"`
	SyncFormatVersion    string              `json:"sync_format_version"`
	Records              []pulledObservation `json:"records"`
}

// pushRaw sends a push body as given.
func (d *syncDevice) pushRaw(body string, header map[string]string) *servertest.Response {
	d.t.Helper()
	return d.env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: d.token, Body: body, Header: header})
}

// pushWith sends records under the given transmission id and expects 200.
func (d *syncDevice) pushWith(tid string, records ...string) api.SyncPushResponse {
	d.t.Helper()
	res := d.pushRaw(fmt.Sprintf(`{"transmission_id":%q,"client_id":%q,"records":[%s]}`, tid, d.clientID, strings.Join(records, ",")), nil)
	require.Equal(d.t, http.StatusOK, res.Status, "%s", res.Body)
	var out api.SyncPushResponse
	res.JSON(d.t, &out)
	require.Equal(d.t, strconv.FormatInt(out.RepositoryGeneration, 10), res.Header.Get("X-Repository-Generation"))
	return out
}

// push sends records in a new transmission and expects every one to be accepted.
func (d *syncDevice) push(records ...string) api.SyncPushResponse {
	d.t.Helper()
	out := d.pushWith(newTransmissionID(), records...)
	require.Nil(d.t, out.FailedRecords)
	require.Equal(d.t, len(records), out.SuccessCount)
	return out
}

// pullPage fetches one page after since; limit 0 sends none.
func (d *syncDevice) pullPage(since int64, limit int, query string) pulledPage {
	d.t.Helper()
	path := "/api/sync/pull"
	var params []string
	if limit > 0 {
		params = append(params, "limit="+strconv.Itoa(limit))
	}
	if query != "" {
		params = append(params, query)
	}
	if len(params) > 0 {
		path += "?" + strings.Join(params, "&")
	}
	res := d.env.Do(servertest.Request{Method: http.MethodPost, Path: path, Token: d.token,
		Body: map[string]any{"client_id": d.clientID, "since": map[string]any{"version": since}}})
	require.Equal(d.t, http.StatusOK, res.Status, "%s", res.Body)
	var page pulledPage
	res.JSON(d.t, &page)
	require.NotNil(d.t, page.Records, "records must be an array, never null: %s", res.Body)
	require.Equal(d.t, "1.0", page.SyncFormatVersion)
	require.Equal(d.t, strconv.FormatInt(page.RepositoryGeneration, 10), res.Header.Get("X-Repository-Generation"))
	return page
}

// sync pulls from the device's cursor until has_more is false, checking the paging promises
// on every page, and returns the number of pages.
func (d *syncDevice) sync(limit int) int {
	d.t.Helper()
	pages := 0
	for {
		since := d.cursor
		page := d.pullPage(since, limit, "")
		pages++
		if limit > 0 {
			require.LessOrEqual(d.t, len(page.Records), limit)
		}
		prev := since
		for _, r := range page.Records {
			require.Greater(d.t, r.Version, prev, "versions ascend within a page and follow since")
			prev = r.Version
			d.data[r.ObservationID] = r
		}
		d.cursor = page.ChangeCutoff
		if !page.HasMore {
			require.Equal(d.t, page.CurrentVersion, page.ChangeCutoff)
			return pages
		}
		require.Greater(d.t, page.ChangeCutoff, since, "has_more with a change_cutoff that does not advance")
	}
}

func requireSyncProblem(t *testing.T, res *servertest.Response, status int, code string) api.ProblemDetail {
	t.Helper()
	require.Equal(t, status, res.Status, "%s", res.Body)
	require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
	var p api.ProblemDetail
	res.JSON(t, &p)
	require.Equal(t, status, p.Status)
	require.NotNil(t, p.Message)
	require.NotEmpty(t, *p.Message)
	if code != "" {
		require.NotNil(t, p.Code, "%s", res.Body)
		require.Equal(t, code, *p.Code)
	}
	return p
}

func TestSyncRoundTripKeepsWhatTheClientSent(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-7f3a9c")

	data := `{"zeta": 1.50, "alpha":  [1e3, -0.0, "caf\u00e9"],
		"nested": {"b": null, "a": true}, "photo": {"id": "0b6c3a7e-1f2d-4c5b-8a9e-123456789abc", "filename": "0b6c3a7e-1f2d-4c5b-8a9e-123456789abc.jpg"}}`
	geo := `{"latitude": -1.2921, "longitude": 36.8219, "accuracy": 12.50, "altitude": null, "altitude_accuracy": null, "timestamp": "2025-12-01T08:11:00.000Z"}`
	full := fmt.Sprintf(`{"observation_id": "obs_1712345678901_42", "form_type": "household", "form_version": "1.2.0",
		"data": %s, "created_at": "2025-12-01T10:11:12.345+02:00", "updated_at": "2025-12-01T08:30:00.000Z",
		"synced_at": null, "deleted": false, "geolocation": %s,
		"author": "ana", "device_id": "formulus-7f3a9c", "tags": ["urgent", "visit 2"]}`, data, geo)
	bare := `{"observation_id": "obs_1712345678902_7", "form_type": "", "form_version": "1",
		"data": {}, "created_at": "2025-12-01T09:00:00.000Z", "updated_at": "2025-12-01T09:00:00.000Z",
		"deleted": true, "geolocation": null}`

	empties := `{"observation_id": "obs_1712345678903_8", "form_type": "visit", "form_version": "1", "data": {"a": ""},
		"created_at": "2025-12-01T09:00:00Z", "updated_at": "2025-12-01T09:00:00Z", "deleted": false,
		"author": "", "device_id": "", "tags": []}`

	pushed := dev.push(full, bare, empties)
	require.Equal(t, int64(3), pushed.CurrentVersion)
	require.Equal(t, int64(1), pushed.RepositoryGeneration)
	require.Nil(t, pushed.Warnings)

	page := dev.pullPage(0, 0, "")
	require.False(t, page.HasMore)
	require.Equal(t, int64(3), page.CurrentVersion)
	require.Len(t, page.Records, 3)

	got := page.Records[0]
	require.Equal(t, "obs_1712345678901_42", got.ObservationID)
	require.Equal(t, "household", got.FormType)
	require.Equal(t, "1.2.0", got.FormVersion)
	require.Equal(t, data, string(got.Data), "data comes back byte for byte")
	require.Equal(t, geo, string(got.Geolocation), "geolocation comes back byte for byte")
	require.Equal(t, "2025-12-01T10:11:12.345+02:00", got.CreatedAt)
	require.Equal(t, "2025-12-01T08:30:00.000Z", got.UpdatedAt)
	require.False(t, got.Deleted)
	require.Equal(t, "ana", *got.Author)
	require.Equal(t, "formulus-7f3a9c", *got.DeviceID)
	require.Equal(t, []string{"urgent", "visit 2"}, got.Tags)
	require.Equal(t, int64(1), got.Version)
	require.NotNil(t, got.SyncedAt, "the server stamps synced_at")
	_, err := time.Parse(time.RFC3339Nano, *got.SyncedAt)
	require.NoError(t, err)

	other := page.Records[1]
	require.Equal(t, "obs_1712345678902_7", other.ObservationID)
	require.Equal(t, "", other.FormType)
	require.Equal(t, `{}`, string(other.Data))
	require.True(t, other.Deleted)
	require.Equal(t, int64(2), other.Version)
	require.Nil(t, other.Author)
	require.Nil(t, other.DeviceID)
	require.Nil(t, other.Tags)
	require.True(t, other.Geolocation == nil || string(other.Geolocation) == "null")

	third := page.Records[2]
	require.Equal(t, "2025-12-01T09:00:00Z", third.CreatedAt)
	require.NotNil(t, third.Author, "an empty author is not a missing one")
	require.Equal(t, "", *third.Author)
	require.Equal(t, "", *third.DeviceID)
	require.NotNil(t, third.Tags, "empty tags are not missing tags")
	require.Empty(t, third.Tags)
}

func TestSyncPushReportsBadRecordsAndStoresTheRest(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	res := dev.pushWith(newTransmissionID(),
		syncObservation("obs_1_1", "2025-12-01T10:00:00.000Z", `{"a":1}`),
		syncObservation("obs_1_2", "2025-12-01T10:00:00.000Z", `{}`, `"geolocation":{"latitude":"91","longitude":0}`),
		syncObservation("obs_1_3", "not a date", `{}`),
		`{"observation_id":"obs_1_4"}`,
		syncObservation("obs_1_5", "2025-12-01T10:00:00.000Z", `{"note":"nul \u0000 inside"}`),
		`{"observation_id":"obs_1_6\u0000","form_type":"f","form_version":"1","data":{},"created_at":"2025-12-01T10:00:00.000Z","updated_at":"2025-12-01T10:00:00.000Z","deleted":false}`,
		syncObservation("obs_1_7", "2025-12-01T10:00:00.000Z", `{}`, `"geolocation":{"latitude":91,"longitude":0}`),
	)
	require.Equal(t, 3, res.SuccessCount)
	require.Equal(t, int64(3), res.CurrentVersion)
	require.NotNil(t, res.FailedRecords)
	failed := *res.FailedRecords
	require.Len(t, failed, 4)
	for i, want := range []struct {
		index int
		id    string
	}{{1, "obs_1_2"}, {2, "obs_1_3"}, {3, "obs_1_4"}, {5, "obs_1_6\uFFFD"}} {
		require.Equal(t, want.index, failed[i].Index)
		require.Equal(t, want.id, *failed[i].ObservationId)
		require.Equal(t, want.id, *failed[i].Id, "the synk CLI prints id")
		require.NotEmpty(t, failed[i].Code)
		require.NotEmpty(t, failed[i].Error)
	}
	require.NotNil(t, res.Warnings)
	require.Len(t, *res.Warnings, 1)
	require.Equal(t, "obs_1_7", (*res.Warnings)[0].Id, "a latitude out of range is stored with a warning")
	require.Equal(t, "UNUSUAL_VALUE", (*res.Warnings)[0].Code)
	dev.sync(0)
	require.Len(t, dev.data, 3)
	require.Equal(t, `{"note":"nul \u0000 inside"}`, string(dev.data["obs_1_5"].Data))
	require.Equal(t, `{"latitude":91,"longitude":0}`, string(dev.data["obs_1_7"].Geolocation))
}

func TestSyncPullPages(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")

	empty := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: dev.token, Body: `{"client_id":"formulus-1","since":{"version":0}}`})
	require.Equal(t, http.StatusOK, empty.Status)
	require.Contains(t, string(empty.Body), `"records":[]`)
	page := dev.pullPage(0, 0, "")
	require.Empty(t, page.Records)
	require.False(t, page.HasMore)
	require.Equal(t, int64(0), page.ChangeCutoff)
	withID := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: dev.token,
		Body: `{"client_id":"formulus-1","since":{"version":0,"id":"obs_1"}}`})
	require.Equal(t, http.StatusOK, withID.Status, "the cursor's id is accepted: %s", withID.Body)

	var records []string
	for i := range 55 {
		records = append(records, syncObservation(fmt.Sprintf("obs_1712345678901_%d", i), "2025-12-01T10:00:00.000Z", fmt.Sprintf(`{"i":%d}`, i)))
	}
	dev.push(records...)

	page = dev.pullPage(0, 0, "")
	require.Len(t, page.Records, 50, "the default page size is 50")
	require.True(t, page.HasMore)
	require.Equal(t, int64(50), page.ChangeCutoff)
	require.Equal(t, int64(55), page.CurrentVersion)

	require.Equal(t, 19, dev.sync(3), "55 records in pages of 3")
	require.Len(t, dev.data, 55)
	require.Equal(t, int64(55), dev.cursor)

	page = dev.pullPage(dev.cursor, 3, "")
	require.Empty(t, page.Records)
	require.False(t, page.HasMore)
	require.Equal(t, int64(55), page.ChangeCutoff)

	page = dev.pullPage(0, 500, "")
	require.Len(t, page.Records, 55)
	require.False(t, page.HasMore)

	for _, limit := range []string{"0", "-1", "ten"} {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull?limit=" + limit, Token: dev.token, Body: map[string]any{"client_id": "formulus-1"}})
		requireSyncProblem(t, res, http.StatusBadRequest, "")
	}
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: dev.token, Body: map[string]any{"since": map[string]any{"version": 0}}})
	requireSyncProblem(t, res, http.StatusBadRequest, "")

	// ids PostgreSQL cannot store are bad input, not an internal error
	for path, body := range map[string]string{
		"/api/sync/pull":                 `{"client_id":"formulus-1\u0000"}`,
		"/api/sync/pull?schemaType=a%00": `{"client_id":"formulus-1"}`,
		"/api/sync/pull?schemaType=a":    `{"client_id":"formulus-1","schema_types":["b\u0000"]}`,
	} {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: path, Token: dev.token, Body: body})
		requireSyncProblem(t, res, http.StatusBadRequest, "")
	}
}

func TestSyncPullFiltersByFormType(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	typed := func(id, formType string) string {
		return strings.Replace(syncObservation(id, "2025-12-01T10:00:00.000Z", `{}`), `"form_type":"household"`, fmt.Sprintf(`"form_type":%q`, formType), 1)
	}
	dev.push(typed("h1", "household"), typed("v1", "visit"), typed("s1", "school"), typed("h2", "household"))

	ids := func(query string, schemaTypes []string) []string {
		t.Helper()
		body := map[string]any{"client_id": "formulus-1"}
		if schemaTypes != nil {
			body["schema_types"] = schemaTypes
		}
		path := "/api/sync/pull"
		if query != "" {
			path += "?schemaType=" + query
		}
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: path, Token: dev.token, Body: body})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		var page pulledPage
		res.JSON(t, &page)
		require.False(t, page.HasMore)
		require.Equal(t, page.CurrentVersion, page.ChangeCutoff)
		out := []string{}
		for _, r := range page.Records {
			out = append(out, r.ObservationID)
		}
		return out
	}
	require.Equal(t, []string{"v1"}, ids("visit", nil))
	require.Equal(t, []string{"h1", "s1", "h2"}, ids("school", []string{"household"}), "query and body filters are combined")
	require.Equal(t, []string{"h1", "h2"}, ids("", []string{"household"}))
	require.Equal(t, []string{}, ids("nothing", nil))
	require.Equal(t, []string{"h1", "v1", "s1", "h2"}, ids("", []string{}), "an empty list filters nothing")
}

func TestSyncPushRefusesIncompleteRequests(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	rec := syncObservation("obs_1_1", "2025-12-01T10:00:00.000Z", `{}`)
	for name, body := range map[string]string{
		"no transmission_id":     `{"client_id":"formulus-1","records":[` + rec + `]}`,
		"empty transmission_id":  `{"transmission_id":"","client_id":"formulus-1","records":[` + rec + `]}`,
		"no client_id":           `{"transmission_id":"abcdefghij012345","records":[` + rec + `]}`,
		"empty client_id":        `{"transmission_id":"abcdefghij012345","client_id":"","records":[` + rec + `]}`,
		"no records":             `{"transmission_id":"abcdefghij012345","client_id":"formulus-1"}`,
		"records null":           `{"transmission_id":"abcdefghij012345","client_id":"formulus-1","records":null}`,
		"records an object":      `{"transmission_id":"abcdefghij012345","client_id":"formulus-1","records":{"a":1}}`,
		"not JSON":               `{"transmission_id":`,
		"NUL in transmission_id": `{"transmission_id":"abcdefghij01234\u0000","client_id":"formulus-1","records":[` + rec + `]}`,
		"NUL in client_id":       `{"transmission_id":"abcdefghij012345","client_id":"formulus-1\u0000","records":[]}`,
	} {
		res := dev.pushRaw(body, nil)
		require.Equal(t, http.StatusBadRequest, res.Status, "%s: %s", name, res.Body)
		requireSyncProblem(t, res, http.StatusBadRequest, "")
	}
	require.Empty(t, dev.pullPage(0, 0, "").Records, "nothing was stored")

	ok := dev.pushRaw(`{"transmission_id":"abcdefghij012345","client_id":"formulus-1","records":[]}`, nil)
	require.Equal(t, http.StatusOK, ok.Status, "an empty batch is fine: %s", ok.Body)
}

func TestSyncPushRetriesAreHarmless(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	a := syncObservation("obs_1_1", "2025-12-01T10:00:00.000Z", `{"a":1}`)
	b := syncObservation("obs_1_2", "2025-12-01T10:00:00.000Z", `{"b":1}`)
	stale := syncObservation("obs_1_2", "2025-11-01T10:00:00.000Z", `{"b":0}`)

	first := dev.pushWith("k3j9x0a1b2c3d4e5", a, b)
	require.Equal(t, int64(2), first.CurrentVersion)
	withWarning := dev.pushWith("k3j9x0a1b2c3d4e6", stale, syncObservation("obs_1_3", "2025-12-01T10:00:00.000Z", `{}`))
	require.Equal(t, int64(3), withWarning.CurrentVersion)
	require.NotNil(t, withWarning.Warnings)

	// the same request again gets the original answers and changes nothing
	require.Equal(t, first, dev.pushWith("k3j9x0a1b2c3d4e5", a, b))
	require.Equal(t, withWarning, dev.pushWith("k3j9x0a1b2c3d4e6", stale, syncObservation("obs_1_3", "2025-12-01T10:00:00.000Z", `{}`)))
	page := dev.pullPage(0, 0, "")
	require.Equal(t, int64(3), page.CurrentVersion)
	require.Len(t, page.Records, 3)
	revs := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/obs_1_2/revisions", Token: dev.token})
	require.Equal(t, http.StatusOK, revs.Status)
	var list api.ObservationRevisionList
	revs.JSON(t, &list)
	require.Len(t, list.Revisions, 2, "the replay added no revision")

	// the same transmission id with other records is refused
	res := dev.pushRaw(fmt.Sprintf(`{"transmission_id":"k3j9x0a1b2c3d4e5","client_id":"formulus-1","records":[%s]}`, a), nil)
	requireSyncProblem(t, res, http.StatusConflict, "conflict")
	require.Equal(t, "1", res.Header.Get("X-Repository-Generation"))
	require.Equal(t, int64(3), dev.pullPage(0, 0, "").CurrentVersion)

	// transmission ids belong to their client
	other := newSyncDevice(t, env, dev.token, "formulus-2")
	require.Equal(t, int64(4), other.pushWith("k3j9x0a1b2c3d4e5", syncObservation("obs_2_1", "2025-12-01T10:00:00.000Z", `{}`)).CurrentVersion)

	// identical content in a new transmission mints no version
	again := dev.push(a, b)
	require.Equal(t, int64(4), again.CurrentVersion)
	require.Nil(t, again.Warnings)
	page = dev.pullPage(0, 0, "")
	require.Equal(t, int64(4), page.CurrentVersion)
	for _, r := range page.Records {
		if r.ObservationID == "obs_1_1" {
			require.Equal(t, int64(1), r.Version)
		}
	}
}

func TestSyncPushReceiptsExpire(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) {
		o.ReceiptTTL = time.Millisecond
		o.CleanupInterval = 20 * time.Millisecond
	})
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	dev.pushWith("k3j9x0a1b2c3d4e5", syncObservation("obs_1", "2025-12-01T10:00:00.000Z", `{"a":1}`))

	// Once the receipt is past its retention the id is free again: a push that reuses it
	// with other records is stored instead of refused as a reuse.
	reuse := fmt.Sprintf(`{"transmission_id":"k3j9x0a1b2c3d4e5","client_id":"formulus-1","records":[%s]}`,
		syncObservation("obs_2", "2025-12-01T10:00:00.000Z", `{"b":1}`))
	status := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if status = dev.pushRaw(reuse, nil).Status; status != http.StatusConflict {
			break
		}
	}
	require.Equal(t, http.StatusOK, status)
	require.Len(t, dev.pullPage(0, 0, "").Records, 2)
}

func TestSyncReadOnlyUserCannotPush(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	viewer := newSyncDevice(t, env, env.CreateUser("viewer", "read-only"), "formulus-1")
	res := viewer.pushRaw(fmt.Sprintf(`{"transmission_id":"abcdefghij012345","client_id":"formulus-1","records":[%s]}`,
		syncObservation("obs_1_1", "2025-12-01T10:00:00.000Z", `{}`)), nil)
	requireSyncProblem(t, res, http.StatusForbidden, "")
	require.Empty(t, viewer.pullPage(0, 0, "").Records, "read-only users may pull; nothing was stored")

	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Body: map[string]any{"client_id": "x"}})
	requireSyncProblem(t, res, http.StatusUnauthorized, "")
}

// TestSyncTwoClientsConverge is the reported scenario: two devices push overlapping
// records, one of them from an older copy. Both must end with the same data, the stale
// device must be told, and the losing revision must stay retrievable.
func TestSyncTwoClientsConverge(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	alice := newSyncDevice(t, env, env.CreateUser("alice", "read-write"), "formulus-alice")
	bob := newSyncDevice(t, env, env.CreateUser("bob", "read-write"), "formulus-bob")

	alice.sync(0)
	bob.sync(0)
	shared := syncObservation("obs_1712345678901_1", "2025-12-01T10:00:00.000Z", `{"count":1}`)
	alice.push(shared)
	bob.push(shared) // both devices had the same first copy
	alice.sync(2)
	bob.sync(2)

	alice.push(
		syncObservation("obs_1712345678901_1", "2025-12-02T10:00:00.000Z", `{"count":2,"by":"alice"}`),
		syncObservation("obs_1712345678901_2", "2025-12-02T10:00:00.000Z", `{"only":"alice"}`),
	)
	stale := bob.push(
		syncObservation("obs_1712345678901_1", "2025-12-01T12:00:00.000Z", `{"count":2,"by":"bob"}`,
			`"geolocation":{"latitude":-1.5,"longitude":36.8,"provider":"gps"}`),
		syncObservation("obs_1712345678999_3", "2025-12-01T12:00:00.000Z", `{"only":"bob"}`),
	)
	require.NotNil(t, stale.Warnings)
	require.Len(t, *stale.Warnings, 1)
	w := (*stale.Warnings)[0]
	require.Equal(t, "obs_1712345678901_1", w.Id)
	require.Equal(t, "CONFLICT", w.Code)
	require.NotEmpty(t, w.Message)

	alice.sync(1)
	bob.sync(1)
	require.Len(t, alice.data, 3)
	require.Equal(t, alice.data, bob.data, "both devices end with the same data")
	require.Equal(t, alice.cursor, bob.cursor)
	require.JSONEq(t, `{"count":2,"by":"alice"}`, string(bob.data["obs_1712345678901_1"].Data))

	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/obs_1712345678901_1/revisions", Token: bob.token})
	require.Equal(t, http.StatusOK, res.Status)
	var list api.ObservationRevisionList
	res.JSON(t, &list)
	require.Equal(t, "obs_1712345678901_1", list.ObservationId)
	require.Len(t, list.Revisions, 3)
	first, lost, current := list.Revisions[0], list.Revisions[1], list.Revisions[2]
	require.Equal(t, api.ObservationRevisionStatusSuperseded, first.Status)
	require.JSONEq(t, `{"count":1}`, string(first.Data))
	require.Equal(t, api.ObservationRevisionStatusRejected, lost.Status)
	require.True(t, lost.Conflict)
	require.Nil(t, lost.Version)
	require.JSONEq(t, `{"count":2,"by":"bob"}`, string(lost.Data))
	require.Equal(t, "bob", *lost.PushedBy)
	require.Equal(t, "formulus-bob", *lost.ClientId)
	require.Equal(t, "2025-12-01T12:00:00.000Z", *lost.UpdatedAt)
	require.NotNil(t, lost.Geolocation)
	require.Equal(t, `{"latitude":-1.5,"longitude":36.8,"provider":"gps"}`, string(*lost.Geolocation), "history keeps the text as sent")
	require.Equal(t, api.ObservationRevisionStatusCurrent, current.Status)
	require.False(t, current.Conflict)
	require.Equal(t, bob.data["obs_1712345678901_1"].Version, *current.Version)
	require.JSONEq(t, `{"count":2,"by":"alice"}`, string(current.Data))
	require.Equal(t, "alice", *current.PushedBy)

	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/obs_unknown/revisions", Token: bob.token})
	requireSyncProblem(t, res, http.StatusNotFound, "")
	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/obs_1712345678901_1%00/revisions", Token: bob.token})
	requireSyncProblem(t, res, http.StatusBadRequest, "")
}

func TestSyncDeletesReachOtherDevicesAndCanBeUndone(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	alice := newSyncDevice(t, env, env.CreateUser("alice", "read-write"), "formulus-alice")
	bob := newSyncDevice(t, env, env.CreateUser("bob", "read-write"), "formulus-bob")
	const id = "obs_1712345678901_9"

	alice.push(syncObservation(id, "2025-12-01T10:00:00.000Z", `{"name":"x"}`))
	bob.sync(0)
	require.False(t, bob.data[id].Deleted)

	alice.push(strings.Replace(syncObservation(id, "2025-12-02T10:00:00.000Z", `{"name":"x"}`), `"deleted":false`, `"deleted":true`, 1))
	bob.sync(0)
	require.True(t, bob.data[id].Deleted, "the tombstone reaches the other device")
	require.Equal(t, "2025-12-02T10:00:00.000Z", bob.data[id].UpdatedAt)

	res := bob.push(syncObservation(id, "2025-12-03T10:00:00.000Z", `{"name":"restored"}`))
	require.Nil(t, res.Warnings)
	alice.sync(0)
	require.False(t, alice.data[id].Deleted, "a newer write restores the record")
	require.JSONEq(t, `{"name":"restored"}`, string(alice.data[id].Data))
}

func TestSyncAtRootPathsWithoutVersionHeader(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("ana", "read-write")
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/sync/push", Token: token, NoVersion: true,
		Body: fmt.Sprintf(`{"transmission_id":"abcdefghij012345","client_id":"formulus-old","records":[%s]}`,
			syncObservation("obs_1712345678901_42", "2025-12-01T10:11:12.345Z", `{"a":1}`))})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	require.Equal(t, float64(1), res.Map(t)["current_version"])

	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/sync/pull", Token: token, NoVersion: true,
		Body: `{"client_id":"formulus-old","since":{"version":0}}`})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var page pulledPage
	res.JSON(t, &page)
	require.Len(t, page.Records, 1)
	require.Equal(t, "obs_1712345678901_42", page.Records[0].ObservationID)
}

func TestSyncPushOverBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 4096
	env := servertest.New(t, func(o *server.Options) { o.MaxPushBytes = limit })
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	big := syncObservation("obs_1_1", "2025-12-01T10:00:00.000Z", fmt.Sprintf(`{"note":%q}`, strings.Repeat("x", limit)))
	body := fmt.Sprintf(`{"transmission_id":"abcdefghij012345","client_id":"formulus-1","records":[%s]}`, big)

	requireSyncProblem(t, dev.pushRaw(body, nil), http.StatusRequestEntityTooLarge, "request_too_large")

	// A body without a declared length is cut off while it is read. The contract client
	// always declares the length, so this one request goes out directly.
	req, err := http.NewRequest(http.MethodPost, env.HTTP.URL+"/api/sync/push", io.MultiReader(bytes.NewReader([]byte(body))))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Ode-Version", servertest.Version)
	req.Header.Set("Authorization", "Bearer "+dev.token)
	raw, err := env.HTTP.Client().Do(req)
	require.NoError(t, err)
	defer raw.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, raw.StatusCode)
	var p api.ProblemDetail
	require.NoError(t, json.NewDecoder(raw.Body).Decode(&p))
	require.Equal(t, "request_too_large", *p.Code)

	page := dev.pullPage(0, 0, "")
	require.Empty(t, page.Records, "nothing was stored")
	require.Equal(t, int64(0), page.CurrentVersion)

	dev.push(syncObservation("obs_1_2", "2025-12-01T10:00:00.000Z", `{"small":true}`))
}

func TestSyncPushOverRecordLimit(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	records := strings.Repeat(`{},`, obsync.MaxPushRecords) + syncObservation("obs_1_1", "2025-12-01T10:00:00.000Z", `{}`)
	res := dev.pushRaw(`{"transmission_id":"abcdefghij012345","client_id":"formulus-1","records":[`+records+`]}`, nil)
	requireSyncProblem(t, res, http.StatusRequestEntityTooLarge, "request_too_large")
	require.Empty(t, dev.pullPage(0, 0, "").Records, "nothing was stored")
}

func TestSyncPullAcceptsNullOptionalFields(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	d := newSyncDevice(t, env, env.CreateUser("collector", "read-write"), "dev-1")
	d.push(syncObservation("obs_1", "2025-01-01T10:00:00.000Z", `{"a":1}`))

	// Clients built from structs without omitempty send null for what they do not set.
	for _, body := range []string{
		`{"client_id":"dev-1","since":null,"schema_types":null,"repository_generation":null}`,
		`{"client_id":"dev-1","since":{"version":null,"id":null}}`,
	} {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: d.token, Body: body})
		require.Equal(t, http.StatusOK, res.Status, "%s: %s", body, res.Body)
		var page pulledPage
		res.JSON(t, &page)
		require.Len(t, page.Records, 1, body)
	}
}

// TestSyncKeepsUnusualRecordsByteForByte sends what real devices send and what used to be
// refused: a negative accuracy and vertical accuracy (iOS, for "unknown"), a geolocation
// timestamp in milliseconds, and members the contract does not name, at the top and in the
// geolocation. The 2025 app pushes it at the root path; it is stored with warnings, and
// every device pulls it back with each member byte for byte as sent.
func TestSyncKeepsUnusualRecordsByteForByte(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("ana", "read-write")
	const sent = `{"observation_id":"obs_1733047860000_7","form_type":"household","form_version":"1.2.0",` +
		`"data":{"name":"Amina","age":31,"photo":{"id":"0b6c3a7e","filename":"0b6c3a7e.jpg"},"note":"caf\u00e9 \"x\""},` +
		`"created_at":"2025-12-01T10:11:12.345Z","updated_at":"2025-12-01T10:11:12.345Z","synced_at":null,"deleted":false,` +
		`"geolocation":{"latitude":-1.2921,"longitude":36.8219,"accuracy":-1,"altitude":1650.5,"altitude_accuracy":-1,` +
		`"timestamp":1733047860000,"heading":-1,"speed":-1.0,"mocked":false},` +
		`"app_build":"2.1.0+77","sync_meta":{ "attempts": [1, 2] },"empty":null}`
	push := func() *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: "/sync/push", Token: token, NoVersion: true,
			Body: `{"client_id":"formulus-old","records":[` + sent + `],"transmission_id":"` + newTransmissionID() + `"}`})
	}
	res := push()
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var answer api.SyncPushResponse
	res.JSON(t, &answer)
	require.Equal(t, 1, answer.SuccessCount)
	require.Nil(t, answer.FailedRecords)
	require.NotNil(t, answer.Warnings)
	require.Len(t, *answer.Warnings, 2, "one per negative accuracy: %+v", *answer.Warnings)
	for _, w := range *answer.Warnings {
		require.Equal(t, "obs_1733047860000_7", w.Id)
		require.Equal(t, "UNUSUAL_VALUE", w.Code)
		require.Contains(t, w.Message, "accuracy")
	}

	var want map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(sent), &want))
	delete(want, "synced_at") // the server's member
	for _, path := range []string{"/api/sync/pull", "/sync/pull"} {
		pull := env.Do(servertest.Request{Method: http.MethodPost, Path: path, Token: env.CreateUser("viewer"+strconv.Itoa(len(path)), "read-only"),
			NoVersion: path == "/sync/pull", Body: `{"client_id":"formulus-other","since":{"version":0}}`})
		require.Equal(t, http.StatusOK, pull.Status, "%s", pull.Body)
		var page struct {
			Records []map[string]json.RawMessage `json:"records"`
		}
		pull.JSON(t, &page)
		require.Len(t, page.Records, 1)
		got := page.Records[0]
		for name, text := range want {
			require.Equal(t, string(text), string(got[name]), "%s of a pull at %s", name, path)
		}
		require.Equal(t, `1`, string(got["version"]))
	}

	// Sent again, it is the same content: no new version.
	res = push()
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	require.Equal(t, float64(1), res.Map(t)["current_version"])

	revs := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/obs_1733047860000_7/revisions", Token: token})
	require.Equal(t, http.StatusOK, revs.Status)
	var list api.ObservationRevisionList
	revs.JSON(t, &list)
	require.Len(t, list.Revisions, 1)
	require.JSONEq(t, `{"app_build":"2.1.0+77","sync_meta":{ "attempts": [1, 2] },"empty":null}`, string(*list.Revisions[0].Extra))
	require.JSONEq(t, string(want["geolocation"]), string(*list.Revisions[0].Geolocation))
}

// TestSyncPullCapsTheLimit is the shipped CLI's `sync pull --limit 1000` at the root path:
// the limit is capped at 500, not refused, and the page says that more changes wait.
func TestSyncPullCapsTheLimit(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "synk-cli")
	records := make([]string, 501)
	for i := range records {
		records[i] = syncObservation(fmt.Sprintf("obs_%d", i), "2025-12-01T10:00:00.000Z", `{}`)
	}
	dev.push(records...)

	pull := func(since int64) pulledPage {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/sync/pull?limit=1000", Token: dev.token, NoVersion: true,
			Header: map[string]string{"x-api-version": "1.0.0"}, Body: fmt.Sprintf(`{"client_id":"synk-cli","since":{"version":%d}}`, since)})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		var page pulledPage
		res.JSON(t, &page)
		return page
	}
	page := pull(0)
	require.Len(t, page.Records, 500)
	require.True(t, page.HasMore)
	require.Equal(t, int64(500), page.ChangeCutoff)
	page = pull(page.ChangeCutoff)
	require.Len(t, page.Records, 1)
	require.False(t, page.HasMore)
	require.Equal(t, int64(501), page.ChangeCutoff)
}

// TestSyncAnswersCarryIntegerVersions covers the desktop client, which decodes strictly:
// every pull and push answer carries current_version and repository_generation, and every
// pull change_cutoff, as JSON integers.
func TestSyncAnswersCarryIntegerVersions(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "desktop-1")
	integers := func(res *servertest.Response, names ...string) {
		t.Helper()
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		dec := json.NewDecoder(bytes.NewReader(res.Body))
		dec.UseNumber()
		var m map[string]any
		require.NoError(t, dec.Decode(&m))
		for _, name := range names {
			n, ok := m[name].(json.Number)
			require.True(t, ok, "%s is %T in %s", name, m[name], res.Body)
			_, err := strconv.ParseInt(n.String(), 10, 64)
			require.NoError(t, err, "%s is %s, not an integer", name, n)
		}
		require.Equal(t, m["repository_generation"].(json.Number).String(), res.Header.Get("X-Repository-Generation"))
	}
	push := func(body string) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: dev.token,
			Header: map[string]string{"x-ode-client-id": "desktop-1"}, Body: body})
	}
	pull := func(query string, since int64) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull" + query, Token: dev.token,
			Header: map[string]string{"x-ode-client-id": "desktop-1"}, Body: fmt.Sprintf(`{"client_id":"desktop-1","since":{"version":%d}}`, since)})
	}
	pushFields := []string{"current_version", "repository_generation", "success_count"}
	pullFields := []string{"current_version", "repository_generation", "change_cutoff"}

	integers(pull("", 0), pullFields...)
	integers(push(`{"transmission_id":"probe-1","client_id":"desktop-1","records":[]}`), pushFields...)
	body := `{"transmission_id":"push-1","client_id":"desktop-1","repository_generation":1,"records":[` +
		syncObservation("obs_1", "2025-12-01T10:00:00.000Z", `{}`) + `,` + syncObservation("obs_2", "2025-12-01T10:00:00.000Z", `{}`) + `,{"bad":true}]}`
	integers(push(body), pushFields...)
	integers(push(body), pushFields...) // the replay
	integers(pull("?limit=1", 0), pullFields...)
	integers(pull("?limit=1", 1), pullFields...)
	integers(pull("?schemaType=household", 0), pullFields...)
}

// TestSyncPushIsReadAsItArrives sends a push whose body arrives slowly: its first records
// are staged in the database while the rest of the body is still on its way, so a push is
// never held in memory whole. Whatever the outcome, nothing is left staged.
func TestSyncPushIsReadAsItArrives(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("ana", "read-write")
	note := strings.Repeat("x", 600<<10)
	staged := func() int {
		var n int
		require.NoError(t, env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM push_staging").Scan(&n))
		return n
	}

	for _, tc := range []struct {
		name   string
		end    string
		status int
		stored int
	}{
		{"complete", `]}`, http.StatusOK, 3},
		{"broken at the end", `]`, http.StatusBadRequest, 0},
	} {
		body, w := io.Pipe()
		req, err := http.NewRequest(http.MethodPost, env.HTTP.URL+"/api/sync/push", body)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Ode-Version", servertest.Version)
		req.Header.Set("Authorization", "Bearer "+token)
		done := make(chan *http.Response, 1)
		go func() {
			res, err := env.HTTP.Client().Do(req)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			done <- res
		}()
		_, err = fmt.Fprintf(w, `{"client_id":"formulus-1","transmission_id":%q,"records":[`, newTransmissionID())
		require.NoError(t, err)
		for i := range 3 {
			if i > 0 {
				_, err = io.WriteString(w, ",")
				require.NoError(t, err)
			}
			_, err = io.WriteString(w, syncObservation(fmt.Sprintf("obs_%s_%d", tc.name[:5], i), "2025-12-01T10:00:00.000Z", fmt.Sprintf(`{"note":%q}`, note)))
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool { return staged() > 0 }, 10*time.Second, 10*time.Millisecond,
			"%s: records are staged before the body ends", tc.name)
		_, err = io.WriteString(w, tc.end)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		res := <-done
		require.NotNil(t, res)
		_ = res.Body.Close()
		require.Equal(t, tc.status, res.StatusCode, tc.name)
		require.Equal(t, 0, staged(), "%s: the staged records are removed", tc.name)
	}
	dev := newSyncDevice(t, env, token, "formulus-1")
	dev.sync(0)
	require.Len(t, dev.data, 3)
}

// TestStagedRecordsOfADeadPushAreRemoved covers the records a process staged for a push it
// never finished (it died): the cleanup job removes them once they are an hour old, and
// leaves younger ones, which may belong to a push still running.
func TestStagedRecordsOfADeadPushAreRemoved(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) { o.CleanupInterval = 20 * time.Millisecond })
	ctx := context.Background()
	_, err := env.Pool.Exec(ctx, `INSERT INTO push_staging (batch_id, idx, raw, extra, created_at) VALUES
		(gen_random_uuid(), 0, '\x7b7d', '', now() - interval '61 minutes'),
		(gen_random_uuid(), 0, '\x7b7d', '', now() - interval '10 minutes')`)
	require.NoError(t, err)
	count := func() int {
		var n int
		require.NoError(t, env.Pool.QueryRow(ctx, "SELECT count(*) FROM push_staging").Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return count() == 1 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // several more cleanups
	require.Equal(t, 1, count(), "a push that may still run keeps its records")
}

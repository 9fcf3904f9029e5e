package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/server/metrics"
)

// Operations of the contract that are not built yet are expected, not failures of the
// server: their 501 is logged as a warning, as is a 503 while the database is away. A
// real failure is still an error.
func TestAccessLogLevels(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewJSONHandler(&logs, nil)), operations: map[string]string{"GET /later": "later"}, metrics: metrics.New(nil)}
	e := echo.New()
	e.HTTPErrorHandler = s.handleError
	e.Use(s.accessLog)
	e.GET("/later", func(echo.Context) error {
		return newProblem(http.StatusNotImplemented, codeNotImplemented, "not built yet")
	})
	e.GET("/broken", func(echo.Context) error { return echo.ErrInternalServerError })
	e.GET("/down", func(echo.Context) error { return fmt.Errorf("error reading: %w", db.ErrUnavailable) })

	for path, level := range map[string]string{"/later": "WARN", "/down": "WARN", "/broken": "ERROR"} {
		logs.Reset()
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
		var last map[string]any
		for dec := json.NewDecoder(&logs); dec.More(); {
			require.NoError(t, dec.Decode(&last))
		}
		require.Equal(t, "request", last["msg"])
		require.Equal(t, level, last["level"], path)
	}
}

// utf8Body checks text that arrives in pieces: characters split between reads are fine,
// bad bytes and a character cut off at the end are not.
func TestUTF8BodyAcrossReads(t *testing.T) {
	t.Parallel()
	read := func(text string) error {
		body := &utf8Body{ReadCloser: io.NopCloser(iotest.OneByteReader(strings.NewReader(text)))}
		_, err := io.ReadAll(body)
		return err
	}
	require.NoError(t, read(`{"name":"Ámína 🌍 ✓"}`))
	require.ErrorIs(t, read("{\"name\":\"a\xffb\"}"), errInvalidUTF8)
	require.ErrorIs(t, read("{\"name\":\"\xed\xa0\x80\"}"), errInvalidUTF8, "a surrogate is not UTF-8")
	require.ErrorIs(t, read("{\"name\":\"\xf0\x9f\x8c"), errInvalidUTF8, "a character cut off at the end")
}

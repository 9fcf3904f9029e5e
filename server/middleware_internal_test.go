package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
)

// Operations of the contract that are not built yet are expected, not failures of the
// server: their 501 is logged as a warning. A real failure is still an error.
func TestAccessLogLevels(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewJSONHandler(&logs, nil)), operations: map[string]string{"GET /later": "later"}}
	e := echo.New()
	e.HTTPErrorHandler = s.handleError
	e.Use(s.accessLog)
	e.GET("/later", func(echo.Context) error { return errNotImplemented })
	e.GET("/broken", func(echo.Context) error { return echo.ErrInternalServerError })

	for path, level := range map[string]string{"/later": "WARN", "/broken": "ERROR"} {
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

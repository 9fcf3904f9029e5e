package server

import (
	"io"
	"net/http"
	"strings"
	"time"
)

// servedContent is a response written by http.ServeContent, which answers conditional
// requests (If-None-Match, If-Modified-Since: 304), byte ranges (206, 416) and sets
// Content-Length; the generated binary responses can do none of that. Operations wrap it
// in a type of their own that implements their response interface.
type servedContent struct {
	req     *http.Request
	content io.ReadSeekCloser
	modTime time.Time
	// headers are set before serving: Content-Type, ETag, Content-Disposition, ...
	headers map[string]string
}

func (c servedContent) serve(w http.ResponseWriter) error {
	defer c.content.Close()
	for k, v := range c.headers {
		w.Header().Set(k, v)
	}
	http.ServeContent(w, c.req, "", c.modTime, c.content)
	return nil
}

// noneMatch reports whether an If-None-Match value matches etag, with the weak
// comparison RFC 9110 prescribes for it: "*", or any tag of the list, with or without W/.
func noneMatch(header, etag string) bool {
	header = strings.TrimSpace(header)
	if header == "*" {
		return true
	}
	for header != "" {
		header = strings.TrimLeft(header, " \t,")
		header = strings.TrimPrefix(header, "W/")
		if !strings.HasPrefix(header, `"`) {
			return false
		}
		end := strings.IndexByte(header[1:], '"')
		if end < 0 {
			return false
		}
		if header[:end+2] == strings.TrimPrefix(etag, "W/") {
			return true
		}
		header = header[end+2:]
	}
	return false
}

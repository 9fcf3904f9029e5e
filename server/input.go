package server

import (
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

// refuseUnstorableText is a strict middleware: before any handler runs, it refuses a
// request whose parameters or body hold text PostgreSQL cannot store, a NUL character or
// invalid UTF-8, with a 400 naming the field. It walks the operation's typed request, so
// every parameter and body field of every operation, present and future, is covered.
// Raw JSON (observation records and form data) is the sync service's to judge.
func refuseUnstorableText(f api.StrictHandlerFunc, _ string) api.StrictHandlerFunc {
	return func(ctx echo.Context, request any) (any, error) {
		if field, why := unstorableText(reflect.ValueOf(request), ""); why != "" {
			return nil, newProblem(http.StatusBadRequest, codeValidation, fmt.Sprintf("%s %s", field, why))
		}
		return f(ctx, request)
	}
}

// unstorable says why PostgreSQL text cannot hold s, or "" when it can.
func unstorable(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return "must not contain NUL characters"
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	}
	return ""
}

// unstorableText returns the first field under v (named from path) whose text
// PostgreSQL cannot store, and why.
func unstorableText(v reflect.Value, path string) (field, why string) {
	switch v.Kind() {
	case reflect.String:
		if why := unstorable(v.String()); why != "" {
			return path, why
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return unstorableText(v.Elem(), path)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "", "" // bytes, such as raw JSON
		}
		for i := range v.Len() {
			if field, why := unstorableText(v.Index(i), path+"["+strconv.Itoa(i)+"]"); why != "" {
				return field, why
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if field, why := unstorableText(it.Key(), path+" (a key)"); why != "" {
				return field, why
			}
			if field, why := unstorableText(it.Value(), path+"."+fmt.Sprint(it.Key())); why != "" {
				return field, why
			}
		}
	case reflect.Struct:
		// Only the generated request types are walked: other structs (a multipart reader,
		// a date) hold no client text in exported fields.
		if v.Type().PkgPath() != reflect.TypeFor[api.ProblemDetail]().PkgPath() {
			return "", ""
		}
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			if !sf.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			sub := path
			switch {
			case name != "" && path != "":
				sub = path + "." + name
			case name != "":
				sub = name
			}
			if field, why := unstorableText(v.Field(i), sub); why != "" {
				return field, why
			}
		}
	}
	return "", ""
}

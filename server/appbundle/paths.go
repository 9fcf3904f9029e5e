package appbundle

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds on bundle paths: devices unpack bundles onto their own file systems, where a
// name segment of more than 255 bytes cannot be created.
const (
	MaxPathBytes    = 1024
	maxSegmentBytes = 255
)

// pathProblem says why name cannot be the path of a file in a bundle: "" when it can.
// Paths are relative, "/"-separated, and stay inside the bundle wherever they are
// unpacked (no absolute paths, drive letters, backslashes or ".." segments).
func pathProblem(name string) (code, msg string) {
	switch {
	case name == "":
		return CodeInvalidPath, "the path is empty"
	case !utf8.ValidString(name):
		return CodeInvalidPath, "the path is not valid UTF-8"
	case strings.ContainsRune(name, '\\'):
		return CodeUnsafePath, "the path contains a backslash"
	case name[0] == '/':
		return CodeUnsafePath, "the path is absolute"
	case len(name) >= 2 && name[1] == ':' && (name[0]|0x20 >= 'a' && name[0]|0x20 <= 'z'):
		return CodeUnsafePath, "the path starts with a drive letter"
	case len(name) > MaxPathBytes:
		return CodeInvalidPath, fmt.Sprintf("the path is longer than %d bytes", MaxPathBytes)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return CodeInvalidPath, "the path contains a control character"
		}
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch {
		case seg == "..":
			return CodeUnsafePath, `the path contains a ".." segment`
		case seg == "" || seg == ".":
			return CodeInvalidPath, `the path contains an empty or "." segment`
		case len(seg) > maxSegmentBytes:
			return CodeInvalidPath, fmt.Sprintf("a segment of the path is longer than %d bytes", maxSegmentBytes)
		}
	}
	return "", ""
}

// CheckPath refuses a requested file path that no bundle can contain, with an
// InvalidRequestError that says why.
func CheckPath(path string) error {
	if _, msg := pathProblem(path); msg != "" {
		return &InvalidRequestError{Detail: fmt.Sprintf("%q is not a bundle file path: %s", path, msg)}
	}
	return nil
}

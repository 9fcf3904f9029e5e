package appbundle

import (
	"fmt"
	"slices"
	"strings"
)

// Problem codes: what was wrong with a refused bundle.
const (
	CodeNotZip           = "not_a_zip"
	CodeUploadTooLarge   = "upload_too_large"
	CodeTooManyFiles     = "too_many_files"
	CodeTooLarge         = "too_large"
	CodeCompressionRatio = "compression_ratio"
	CodeUnsafePath       = "unsafe_path"
	CodeInvalidPath      = "invalid_path"
	CodeNotRegularFile   = "not_a_regular_file"
	CodeDuplicatePath    = "duplicate_path"
	CodeUnsupported      = "unsupported_entry"
	CodeCorruptEntry     = "corrupt_entry"
	CodeUnexpectedPath   = "unexpected_path"
	CodeMissingFile      = "missing_file"
	CodeInvalidJSON      = "invalid_json"
	CodeInvalidExtension = "invalid_extension"
	CodeMissingRenderer  = "missing_renderer"
	CodeCoreFieldChanged = "core_field_changed"
)

// sizeCodes are the problems that make a refusal "too large" (413) rather than "bad" (400).
var sizeCodes = []string{CodeUploadTooLarge, CodeTooManyFiles, CodeTooLarge}

// MaxListedProblems bounds how many problems a refusal lists; Total counts them all.
const MaxListedProblems = 100

// Problem is one thing wrong with a bundle.
type Problem struct {
	// Path is the bundle path the problem is about; empty for the archive as a whole.
	Path    string
	Code    string
	Message string
}

// ValidationError refuses a bundle, listing every problem found.
type ValidationError struct {
	Problems []Problem
	// Total is the number of problems found; only the first MaxListedProblems are listed.
	Total int
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("the app bundle was refused: %d problem(s)", e.Total)
}

// TooLarge reports whether the bundle was refused for its size (413) rather than its
// content (400).
func (e *ValidationError) TooLarge() bool {
	for _, p := range e.Problems {
		if slices.Contains(sizeCodes, p.Code) {
			return true
		}
	}
	return false
}

// Summary is one sentence describing the refusal.
func (e *ValidationError) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the app bundle was refused: %d problem(s) found", e.Total)
	if e.Total > len(e.Problems) {
		fmt.Fprintf(&b, ", the first %d are listed", len(e.Problems))
	}
	if len(e.Problems) > 0 {
		p := e.Problems[0]
		b.WriteString("; first: ")
		if p.Path != "" {
			b.WriteString(p.Path + ": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// problems collects problems as validation finds them.
type problems struct {
	list  []Problem
	total int
}

func (p *problems) add(path, code, format string, args ...any) {
	p.total++
	if len(p.list) < MaxListedProblems {
		p.list = append(p.list, Problem{Path: path, Code: code, Message: fmt.Sprintf(format, args...)})
	}
}

func (p *problems) has(codes ...string) bool {
	for _, q := range p.list {
		if slices.Contains(codes, q.Code) {
			return true
		}
	}
	return false
}

func (p *problems) err() error {
	if p.total == 0 {
		return nil
	}
	return &ValidationError{Problems: p.list, Total: p.total}
}

package appbundle

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// ChangesRequest names the versions to compare; empty names take the defaults.
type ChangesRequest struct {
	// Current is the version compared from. Default: the active version, or the oldest
	// stored one when none is active.
	Current string
	// Target is the version compared to. Default: the newest stored version when Preview
	// is set, otherwise the stored version that follows Current (Current itself when it
	// is the newest, which gives an empty comparison).
	Target  string
	Preview bool
}

// FieldRef names a field and its type.
type FieldRef struct{ Name, Type string }

// FormChange describes a form present in both versions that changed.
type FormChange struct {
	Form                                  string
	SchemaChanged, UIChanged, CoreChanged bool
	AddedFields, RemovedFields            []FieldRef
}

// FileRef is a file of one version.
type FileRef struct {
	Path, SHA256 string
	Size         int64
}

// FileChange is a path whose content differs between the versions.
type FileChange struct {
	Path             string
	SHA256A, SHA256B string
	SizeA, SizeB     int64
}

// ChangeLog is the difference between two versions, by form and by file.
type ChangeLog struct {
	From, To                 string
	FormChanges, UIChanges   bool
	NewForms, RemovedForms   []string
	ModifiedForms            []FormChange
	AddedFiles, RemovedFiles []FileRef
	ModifiedFiles            []FileChange
}

// Changes compares two stored versions, from one database snapshot.
func (s *Service) Changes(ctx context.Context, req ChangesRequest) (*ChangeLog, error) {
	var out *ChangeLog
	err := s.readOnly(ctx, func(q *dbgen.Queries) error {
		from, to, err := resolveComparison(ctx, q, req)
		if err != nil {
			return err
		}
		a, err := loadVersion(ctx, q, from)
		if err != nil {
			return err
		}
		b, err := loadVersion(ctx, q, to)
		if err != nil {
			return err
		}
		if out, err = compare(a, b); err != nil {
			return err
		}
		out.From, out.To = VersionName(from), VersionName(to)
		return nil
	})
	return out, err
}

func resolveComparison(ctx context.Context, q *dbgen.Queries, req ChangesRequest) (from, to int32, err error) {
	rows, err := q.AppBundleVersionList(ctx) // newest first
	if err != nil {
		return 0, 0, fmt.Errorf("error listing app bundle versions: %w", err)
	}
	if len(rows) == 0 {
		return 0, 0, &NotFoundError{Detail: "no app bundle version is stored yet"}
	}
	stored := func(name string) (int32, error) {
		n, err := ParseVersionName(name)
		if err != nil {
			return 0, err
		}
		for _, r := range rows {
			if r.Version == n {
				return n, nil
			}
		}
		return 0, &NotFoundError{Detail: fmt.Sprintf("no app bundle version %s is stored", VersionName(n))}
	}
	if req.Current != "" {
		if from, err = stored(req.Current); err != nil {
			return 0, 0, err
		}
	} else {
		from = rows[len(rows)-1].Version
		for _, r := range rows {
			if r.Active {
				from = r.Version
			}
		}
	}
	switch {
	case req.Target != "":
		to, err = stored(req.Target)
	case req.Preview:
		to = rows[0].Version
	default:
		to = from
		for _, r := range rows {
			if r.Version > from {
				to = r.Version // the list is newest first: the last one above from is the next
			}
		}
	}
	return from, to, err
}

type versionContent struct {
	forms map[string]dbgen.AppBundleFormListRow
	files map[string]FileRef
	paths []string
}

func loadVersion(ctx context.Context, q *dbgen.Queries, n int32) (*versionContent, error) {
	forms, err := q.AppBundleFormList(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("error reading app bundle forms: %w", err)
	}
	files, err := q.AppBundleFileList(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("error reading app bundle files: %w", err)
	}
	v := &versionContent{forms: map[string]dbgen.AppBundleFormListRow{}, files: map[string]FileRef{}}
	for _, f := range forms {
		v.forms[f.Name] = f
	}
	for _, f := range files {
		v.files[f.Path] = FileRef{Path: f.Path, SHA256: hex.EncodeToString(f.Sha256), Size: f.Size}
		v.paths = append(v.paths, f.Path)
	}
	return v, nil
}

// compare diffs two versions: forms only in b are new, only in a removed; forms in both
// are compared by their schema, UI and core hashes, and when the schema changed, field by
// field (a field whose type changed is removed with the old type and added with the new).
func compare(a, b *versionContent) (*ChangeLog, error) {
	out := &ChangeLog{}
	for _, name := range sortedKeys(b.forms) {
		if _, ok := a.forms[name]; !ok {
			out.NewForms = append(out.NewForms, name)
		}
	}
	for _, name := range sortedKeys(a.forms) {
		fa := a.forms[name]
		fb, ok := b.forms[name]
		if !ok {
			out.RemovedForms = append(out.RemovedForms, name)
			continue
		}
		c := FormChange{Form: name, SchemaChanged: fa.SchemaHash != fb.SchemaHash, UIChanged: fa.UiHash != fb.UiHash, CoreChanged: fa.CoreHash != fb.CoreHash}
		if !c.SchemaChanged && !c.UIChanged && !c.CoreChanged {
			continue
		}
		if c.SchemaChanged {
			var err error
			if c.AddedFields, c.RemovedFields, err = fieldChanges(fa.Fields, fb.Fields); err != nil {
				return nil, fmt.Errorf("error comparing the fields of form %s: %w", name, err)
			}
		}
		out.ModifiedForms = append(out.ModifiedForms, c)
		out.UIChanges = out.UIChanges || c.UIChanged
		out.FormChanges = out.FormChanges || c.SchemaChanged
	}
	out.FormChanges = out.FormChanges || len(out.NewForms) > 0 || len(out.RemovedForms) > 0
	for _, p := range b.paths {
		fb := b.files[p]
		switch fa, ok := a.files[p]; {
		case !ok:
			out.AddedFiles = append(out.AddedFiles, fb)
		case fa.SHA256 != fb.SHA256:
			out.ModifiedFiles = append(out.ModifiedFiles, FileChange{Path: p, SHA256A: fa.SHA256, SHA256B: fb.SHA256, SizeA: fa.Size, SizeB: fb.Size})
		}
	}
	for _, p := range a.paths {
		if _, ok := b.files[p]; !ok {
			out.RemovedFiles = append(out.RemovedFiles, a.files[p])
		}
	}
	return out, nil
}

func fieldChanges(rawA, rawB []byte) (added, removed []FieldRef, err error) {
	var fa, fb []Field
	if err := json.Unmarshal(rawA, &fa); err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(rawB, &fb); err != nil {
		return nil, nil, err
	}
	types := func(fs []Field) map[string]string {
		m := make(map[string]string, len(fs))
		for _, f := range fs {
			m[f.Name] = f.Type
		}
		return m
	}
	ta, tb := types(fa), types(fb)
	for _, f := range fb {
		if t, ok := ta[f.Name]; !ok || t != f.Type {
			added = append(added, FieldRef{Name: f.Name, Type: f.Type})
		}
	}
	for _, f := range fa {
		if t, ok := tb[f.Name]; !ok || t != f.Type {
			removed = append(removed, FieldRef{Name: f.Name, Type: f.Type})
		}
	}
	return added, removed, nil
}

// FormSummary is a form of the active version, with how many live observations of its
// form type are stored.
type FormSummary struct {
	Name             string
	SchemaHash       string
	Fields           []Field
	ObservationCount int64
}

// ActiveForms lists the forms of the active version; version is empty (and the list
// too) when no version is active.
func (s *Service) ActiveForms(ctx context.Context) (version string, forms []FormSummary, err error) {
	err = s.readOnly(ctx, func(q *dbgen.Queries) error {
		v, err := q.AppBundleVersionActive(ctx)
		if errors.Is(err, db.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("error reading the active app bundle version: %w", err)
		}
		rows, err := q.AppBundleFormListWithCounts(ctx, v.Version)
		if err != nil {
			return fmt.Errorf("error listing app bundle forms: %w", err)
		}
		version = VersionName(v.Version)
		forms = make([]FormSummary, len(rows))
		for i, r := range rows {
			forms[i] = FormSummary{Name: r.Name, SchemaHash: r.SchemaHash, ObservationCount: r.ObservationCount}
			if err := json.Unmarshal(r.Fields, &forms[i].Fields); err != nil {
				return fmt.Errorf("error reading the fields of form %s: %w", r.Name, err)
			}
		}
		return nil
	})
	return version, forms, err
}

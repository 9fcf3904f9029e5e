package server

import (
	"context"
	"fmt"
	"time"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// The timeline covers at most this many days before its last bucket, and never runs past
// tomorrow: a device with a wrong clock (year 1970 or 2099) cannot make it unbounded.
const (
	statsMaxSpanDays   = 3650
	statsWeeklyFromDay = 365
)

// GetObservationStats counts live observations per form type and over time.
func (s *Server) GetObservationStats(ctx context.Context, _ api.GetObservationStatsRequestObject) (api.GetObservationStatsResponseObject, error) {
	now := time.Now().UTC()
	byType, err := s.q.ObservationStatsByFormType(ctx)
	if err != nil {
		return nil, fmt.Errorf("error counting observations: %w", err)
	}
	out := api.GetObservationStats200JSONResponse{
		ByFormType: make([]api.ObservationFormTypeCount, len(byType)),
		ComputedAt: now,
		Timeline:   api.ObservationTimeline{BucketUnit: api.ObservationTimelineBucketUnitDay, Buckets: []api.ObservationTimelineBucket{}},
	}
	for i, t := range byType {
		out.ByFormType[i] = api.ObservationFormTypeCount{FormType: t.FormType, Count: t.Count}
		out.TotalCount += t.Count
	}
	if out.TotalCount == 0 {
		return out, nil
	}
	span, err := s.q.ObservationStatsSpan(ctx)
	if err != nil {
		return nil, fmt.Errorf("error reading observation dates: %w", err)
	}
	first, last := day(span.FirstCreated), day(span.LastCreated)
	last = minTime(last, day(now).AddDate(0, 0, 1))
	first = minTime(maxTime(first, last.AddDate(0, 0, -statsMaxSpanDays)), last)
	unit, step := api.ObservationTimelineBucketUnitDay, 1
	if last.Sub(first) >= statsWeeklyFromDay*24*time.Hour {
		unit, step = api.ObservationTimelineBucketUnitWeek, 7
		first = first.AddDate(0, 0, -((int(first.Weekday()) + 6) % 7)) // back to Monday
		last = last.AddDate(0, 0, -((int(last.Weekday()) + 6) % 7))
	}
	days, err := s.q.ObservationStatsDays(ctx, dbgen.ObservationStatsDaysParams{RangeStart: first, RangeEnd: last.AddDate(0, 0, step)})
	if err != nil {
		return nil, fmt.Errorf("error counting observations per day: %w", err)
	}
	counts := make(map[time.Time]int64, len(days))
	for _, d := range days {
		dt := day(d.Day.Time)
		bucket := first.AddDate(0, 0, int(dt.Sub(first).Hours()/24)/step*step)
		counts[bucket] += d.Count
	}
	tl := api.ObservationTimeline{BucketUnit: unit, RangeStart: first.Format(time.DateOnly), RangeEnd: last.Format(time.DateOnly)}
	for b := first; !b.After(last); b = b.AddDate(0, 0, step) {
		tl.Buckets = append(tl.Buckets, api.ObservationTimelineBucket{BucketStart: b.Format(time.DateOnly), Label: b.Format("Jan 2"), Count: counts[b]})
	}
	out.Timeline = tl
	return out, nil
}

func day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

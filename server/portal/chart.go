package portal

import (
	"fmt"

	"github.com/opendataensemble/synkronus/gen/api"
)

// chart is the stats timeline as an SVG bar chart, laid out on the server so that the
// page needs no chart script. Coordinates are in the SVG's own units; CSS scales it.
type chart struct {
	Width, Height float64
	Bars          []chartBar
	// Ticks are the horizontal grid lines with their counts.
	Ticks []chartTick
	// Labels name a few buckets under the axis.
	Labels   []chartLabel
	Unit     string
	Baseline float64
	Left     float64
}

type chartBar struct {
	X, Y, W, H float64
	Title      string
}

type chartTick struct {
	Y     float64
	Label string
}

type chartLabel struct {
	X      float64
	Text   string
	Anchor string
}

const (
	chartWidth  = 720.0
	chartHeight = 220.0
	chartLeft   = 44.0 // room for the counts
	chartBottom = 24.0 // room for the dates
	chartTop    = 8.0
)

// newChart lays out the timeline; nil when it has no buckets.
func newChart(tl api.ObservationTimeline) *chart {
	n := len(tl.Buckets)
	if n == 0 {
		return nil
	}
	var peak int64
	for _, b := range tl.Buckets {
		peak = max(peak, b.Count)
	}
	top := niceCeiling(peak)
	ch := &chart{Width: chartWidth, Height: chartHeight, Unit: string(tl.BucketUnit), Baseline: chartHeight - chartBottom, Left: chartLeft}
	plotW, plotH := chartWidth-chartLeft-4, chartHeight-chartBottom-chartTop
	slot := plotW / float64(n)
	gap := 0.0
	if slot > 4 {
		gap = slot * 0.2
	}
	for i, b := range tl.Buckets {
		h := plotH * float64(b.Count) / float64(top)
		ch.Bars = append(ch.Bars, chartBar{
			X: round2(chartLeft + float64(i)*slot + gap/2), Y: round2(ch.Baseline - h), W: round2(slot - gap), H: round2(h),
			Title: fmt.Sprintf("%s %s: %s", unitPrefix(tl.BucketUnit), b.BucketStart, count(b.Count)),
		})
	}
	for _, frac := range []int64{0, 1, 2} {
		v := top * frac / 2
		ch.Ticks = append(ch.Ticks, chartTick{Y: round2(ch.Baseline - plotH*float64(frac)/2), Label: count(v)})
	}
	label := func(i int, anchor string) chartLabel {
		return chartLabel{X: round2(chartLeft + (float64(i)+0.5)*slot), Text: tl.Buckets[i].BucketStart, Anchor: anchor}
	}
	ch.Labels = append(ch.Labels, label(0, "start"))
	if n > 2 {
		ch.Labels = append(ch.Labels, label(n/2, "middle"))
	}
	if n > 1 {
		ch.Labels = append(ch.Labels, label(n-1, "end"))
	}
	return ch
}

func unitPrefix(u api.ObservationTimelineBucketUnit) string {
	if u == api.ObservationTimelineBucketUnitWeek {
		return "Week of"
	}
	return "Day"
}

// niceCeiling rounds a peak up to a round, even number (2, 4, 6, 8, 10, then 1, 2 or 5
// times a power of ten), so that the middle grid line is a whole number.
func niceCeiling(v int64) int64 {
	if v <= 10 {
		return max(2, v+v%2)
	}
	for p := int64(10); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= v {
				return m * p
			}
		}
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

package export

import (
	"time"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// observation is one row of the observations table as the export reads it: what a pull
// returns, and the parsed timestamps.
type observation struct {
	obsync.PulledRecord
	CreatedAt time.Time
	UpdatedAt time.Time
}

// The metadata columns that precede the data columns in the Parquet and CSV tables.
var metaColumns = []string{
	"observation_id", "form_type", "form_version", "version",
	"created_at", "updated_at", "synced_at", "deleted",
	"author", "device_id", "tags",
	"geolocation.latitude", "geolocation.longitude", "geolocation.accuracy",
	"geolocation.altitude", "geolocation.altitude_accuracy", "geolocation.timestamp",
}

// geolocation holds the JSON text of the known members of a stored geolocation; nil when
// absent or null. Push validated the numbers as numbers; a timestamp sent as a number
// (milliseconds since the epoch) is left out of the timestamp column.
type geolocation struct {
	numbers   [5]([]byte) // latitude, longitude, accuracy, altitude, altitude_accuracy
	timestamp []byte
}

var geolocationNumbers = [5]string{"latitude", "longitude", "accuracy", "altitude", "altitude_accuracy"}

func parseGeolocation(raw []byte) geolocation {
	var g geolocation
	i := jsonbytes.SkipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return g
	}
	jsonbytes.Members(raw, i, func(key, value []byte) {
		if value[0] == 'n' {
			return
		}
		if string(key) == "timestamp" {
			if value[0] == '"' {
				g.timestamp = value
			}
			return
		}
		for n, name := range geolocationNumbers {
			if k := kindOf(value); string(key) == name && (k == kindInt || k == kindFloat) {
				g.numbers[n] = value
			}
		}
	})
	return g
}

// tableWriter writes the rows of one form type's table into one file of the archive.
type tableWriter interface {
	write(o *observation) error
	close() error
}

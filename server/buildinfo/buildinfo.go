// Package buildinfo holds what the build stamps into the binary.
package buildinfo

import (
	"runtime/debug"
	"sync"
)

// Set with -ldflags "-X github.com/opendataensemble/synkronus/server/buildinfo.Version=1.2.3 ...".
var (
	// Version is the server's semantic version; its major is compared with x-ode-version.
	Version = "1.0.0"
	// Commit is the VCS revision the binary was built from.
	Commit = ""
	// BuildTime is when the binary was built (RFC 3339).
	BuildTime = ""
)

var fillOnce sync.Once

// Info returns the version, commit and build time, taking the commit and time from the Go
// toolchain's VCS stamp when the linker flags did not set them.
func Info() (version, commit, buildTime string) {
	fillOnce.Do(func() {
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			return
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && Commit == "":
				Commit = s.Value
			case s.Key == "vcs.time" && BuildTime == "":
				BuildTime = s.Value
			}
		}
	})
	return Version, Commit, BuildTime
}

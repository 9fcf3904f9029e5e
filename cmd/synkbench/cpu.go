package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is the unit of the CPU times in /proc: USER_HZ, 100 on every Linux build we
// run on (reading it would take cgo).
const clockTicks = 100

// cpuUse is the CPU time a phase took per request (a batch), in milliseconds: in the
// server, in PostgreSQL (every process named postgres on this machine, so also anything
// else it served meanwhile; none when the database runs elsewhere) and in synkbench
// itself, and the share of all the machine's cores that was busy. It tells where a rate
// comes from: how far it is from the machine's limit, and which process spends it.
type cpuUse struct {
	ServerMS    float64 `json:"server_ms_per_batch"`
	PostgresMS  float64 `json:"postgres_ms_per_batch"`
	BenchMS     float64 `json:"synkbench_ms_per_batch"`
	MachineBusy float64 `json:"machine_busy"`
}

// cpuCounters are CPU times used so far, in clock ticks.
type cpuCounters struct {
	server, postgres, bench int64
	busy, total             int64 // of the whole machine
}

// readCPU reads the counters; serverPID 0 is no server.
func readCPU(serverPID int) (cpuCounters, error) {
	var c cpuCounters
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, fmt.Errorf("error reading CPU times: %w", err)
	}
	// cpu  user nice system idle iowait irq softirq steal ...
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 9 || fields[0] != "cpu" {
		return c, fmt.Errorf("unexpected first line in /proc/stat: %q", line)
	}
	for i, f := range fields[1:9] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return c, fmt.Errorf("unexpected first line in /proc/stat: %q", line)
		}
		c.total += v
		if i != 3 && i != 4 { // idle, iowait
			c.busy += v
		}
	}
	if serverPID > 0 {
		if _, c.server, err = processCPU(strconv.Itoa(serverPID)); err != nil {
			return c, err
		}
	}
	if _, c.bench, err = processCPU("self"); err != nil {
		return c, err
	}
	// A backend's time moves to the postmaster's children's time when it exits and is
	// reaped, so the sum over the postgres processes (own and children's time) only grows.
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if name, t, err := processCPU(filepath.Base(d)); err == nil && name == "postgres" {
			c.postgres += t
		}
	}
	return c, nil
}

// processCPU returns a process's name and the CPU time it and its reaped children used.
func processCPU(pid string) (string, int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, fmt.Errorf("error reading CPU times: %w", err)
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses, so cut at the last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("unexpected /proc/%s/stat", pid)
	}
	rest := strings.Fields(string(b[end+1:]))
	if len(rest) < 15 {
		return "", 0, fmt.Errorf("unexpected /proc/%s/stat", pid)
	}
	var t int64
	for _, f := range rest[11:15] { // utime stime cutime cstime
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return "", 0, fmt.Errorf("unexpected /proc/%s/stat", pid)
		}
		t += v
	}
	return string(b[open+1 : end]), t, nil
}

// measureCPU reads the counters now and returns a function that, at the end of a phase of
// requests, returns the phase's cpuUse. Where the counters cannot be read it reports
// zeros: the figure is an aid, not the measurement.
func measureCPU(serverPID int) (stop func(requests int) cpuUse) {
	start, err := readCPU(serverPID)
	return func(requests int) cpuUse {
		end, err2 := readCPU(serverPID)
		if err != nil || err2 != nil || requests == 0 || end.total == start.total {
			return cpuUse{}
		}
		ms := func(a, b int64) float64 { return round(float64(b-a)*1000/clockTicks/float64(requests), 3) }
		return cpuUse{
			ServerMS:    ms(start.server, end.server),
			PostgresMS:  ms(start.postgres, end.postgres),
			BenchMS:     ms(start.bench, end.bench),
			MachineBusy: round(float64(end.busy-start.busy)/float64(end.total-start.total), 2),
		}
	}
}

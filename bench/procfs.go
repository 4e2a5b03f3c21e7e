package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memKB reads a "Key:   N kB" field of /proc/PID/status (VmRSS) or
// /proc/PID/smaps_rollup (Pss).
func memKB(pid int, file, key string) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), file))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == key {
			fields := strings.Fields(v)
			if len(fields) > 0 {
				return strconv.ParseInt(fields[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("bench: no %s in /proc/%d/%s", key, pid, file)
}

// treeMem sums VmRSS and Pss (kB) of pid and all its descendants, and
// counts the processes.
func treeMem(pid int) (rssKB, pssKB int64, procs int) {
	for _, p := range append([]int{pid}, descendants(pid)...) {
		r, err := memKB(p, "status", "VmRSS")
		if err != nil {
			continue // exited meanwhile
		}
		s, _ := memKB(p, "smaps_rollup", "Pss")
		rssKB += r
		pssKB += s
		procs++
	}
	return rssKB, pssKB, procs
}

// descendants lists the live (non-zombie) processes below pid.
func descendants(pid int) []int {
	parent := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[pp] = append(parent[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		kids := parent[queue[0]]
		queue = append(queue[1:], kids...)
		out = append(out, kids...)
	}
	return out
}

// countShells counts the non-sshd processes below pid (the shells of the
// target's sessions).
func countShells(pid int) int {
	n := 0
	for _, p := range descendants(pid) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "comm"))
		if err == nil && strings.TrimSpace(string(b)) != "sshd" {
			n++
		}
	}
	return n
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on Linux for every architecture Go supports).
const clockTicks = 100

// treeCPU sums the user and system CPU seconds of pid and its live
// descendants (/proc/PID/stat utime and stime).
func treeCPU(pid int) float64 {
	var ticks int64
	for _, p := range append([]int{pid}, descendants(pid)...) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		// After the command: state(0) ppid(1) … utime(11) stime(12).
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return float64(ticks) / clockTicks
}

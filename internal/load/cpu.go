package load

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// clockTick is the kernel's USER_HZ, the unit of /proc/<pid>/stat times:
// 100 on every Linux this runs on.
const clockTick = 100

// procCPU is the user + system CPU a process used (with children it
// waited for when withChildren), from /proc/<pid>/stat.
func procCPU(pid int, withChildren bool) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name may hold spaces: fields start after its ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
	if len(f) < 15 {
		return 0, false
	}
	var ticks int64
	last := 12
	if withChildren {
		last = 14
	}
	for _, v := range f[11 : last+1] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTick, true
}

// cpuSample is the CPU used so far by each part of the system.
type cpuSample struct {
	at     time.Time
	client time.Duration // this process: the load's clients (and the server when in-process)
	server time.Duration // the server process, when it is a child
	// pgBackends is per backend of the run's database (pid → CPU): backends
	// come and go, so a difference is taken per pid.
	pgBackends map[int]time.Duration
	// pgAll is every PostgreSQL process of the machine, exited backends
	// included (the postmaster's waited-for children): other databases'
	// work counts here too.
	pgAll time.Duration
	redis time.Duration
	ok    struct{ server, pg, redis bool }
}

// cpuMeter samples the CPU of the server, PostgreSQL and Redis.
type cpuMeter struct {
	serverPID int // 0: the server is in-process or remote
	db        string
	query     func(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	redis     redis.UniversalClient
}

func (m *cpuMeter) sample(ctx context.Context) cpuSample {
	s := cpuSample{at: time.Now(), pgBackends: map[int]time.Duration{}}
	s.client, _ = procCPU(os.Getpid(), false)
	if m.serverPID != 0 {
		s.server, s.ok.server = procCPU(m.serverPID, false)
	}
	if m.query != nil {
		if rows, err := m.query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, m.db); err == nil {
			pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
			if err == nil {
				for _, pid := range pids {
					if c, ok := procCPU(int(pid), false); ok {
						s.pgBackends[int(pid)] = c
					}
				}
				s.ok.pg = len(s.pgBackends) > 0
			}
		}
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if comm, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
				c, _ := procCPU(pid, true)
				s.pgAll += c
			}
		}
	}
	if m.redis != nil {
		if info, err := m.redis.Info(ctx, "cpu").Result(); err == nil {
			var secs float64
			for _, line := range strings.Split(info, "\n") {
				k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
				if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
					f, _ := strconv.ParseFloat(v, 64)
					secs += f
				}
			}
			s.redis, s.ok.redis = time.Duration(secs*float64(time.Second)), true
		}
	}
	return s
}

// cpuUse is the CPU used between two samples.
type cpuUse struct {
	wall                  time.Duration
	client, server, redis time.Duration
	pgDB, pgAll           time.Duration
	ok                    struct{ server, pg, redis bool }
}

func (a cpuSample) to(b cpuSample) cpuUse {
	u := cpuUse{wall: b.at.Sub(a.at), client: b.client - a.client, server: b.server - a.server,
		redis: b.redis - a.redis, pgAll: b.pgAll - a.pgAll}
	u.ok.server, u.ok.pg, u.ok.redis = a.ok.server && b.ok.server, a.ok.pg && b.ok.pg, a.ok.redis && b.ok.redis
	for pid, c := range b.pgBackends {
		u.pgDB += c - a.pgBackends[pid] // a backend born during the run counts whole
	}
	return u
}

// perEvent formats d spread over n events, in µs.
func perEvent(d time.Duration, n int, ok bool) string {
	if !ok || n == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f µs", float64(d.Microseconds())/float64(n))
}

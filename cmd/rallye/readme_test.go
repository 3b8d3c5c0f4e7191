package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rallyehq/rallye/internal/testutil"
)

// asCommand, in the environment, makes this test binary the rallye command
// itself (TestMain runs main): the README's blocks call bin/rallye, and the
// test gives them this binary under that name rather than building the
// command a second time.
const asCommand = "RALLYE_README_AS_COMMAND"

func TestMain(m *testing.M) {
	if os.Getenv(asCommand) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// skipMarker, on the line above a ```sh fence (blank lines between are
// allowed), keeps that block out of the README test; the reason is
// required: `<!-- readme-test: skip (a load command: minutes long) -->`.
var skipMarker = regexp.MustCompile(`^<!-- readme-test: skip \((.+)\) -->$`)

// block is a fenced code block of the README.
type block struct {
	line  int    // of the opening fence, from 1
	lang  string // the fence's info string: sh, json, go or empty
	lines []string
	skip  string // the marker's reason: not run
}

// readmeBlocks returns the fenced blocks of a Markdown text. A skip marker
// that is not followed by a ```sh block is an error (a typo must not leave
// a block untested, nor a marker with nothing to mark).
func readmeBlocks(text string) ([]block, error) {
	var (
		out     []block
		cur     *block
		pending string
		at      int
	)
	for i, l := range strings.Split(text, "\n") {
		n := i + 1
		if cur != nil {
			if strings.TrimSpace(l) == "```" {
				out = append(out, *cur)
				cur = nil
				continue
			}
			cur.lines = append(cur.lines, l)
			continue
		}
		if m := skipMarker.FindStringSubmatch(l); m != nil {
			if pending != "" {
				return nil, fmt.Errorf("README.md:%d: a skip marker follows the one of line %d", n, at)
			}
			pending, at = m[1], n
			continue
		}
		if strings.Contains(l, "readme-test") {
			return nil, fmt.Errorf("README.md:%d: not a skip marker (<!-- readme-test: skip (REASON) -->): %s", n, l)
		}
		if strings.HasPrefix(l, "```") {
			cur = &block{line: n, lang: strings.TrimSpace(strings.TrimPrefix(l, "```"))}
			if pending != "" {
				if cur.lang != "sh" {
					return nil, fmt.Errorf("README.md:%d: the skip marker is above a ```%s block, not ```sh", at, cur.lang)
				}
				cur.skip, pending = pending, ""
			}
			continue
		}
		if pending != "" && strings.TrimSpace(l) != "" {
			return nil, fmt.Errorf("README.md:%d: the skip marker is not above a ```sh block", at)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("README.md:%d: the block is not closed", cur.line)
	}
	if pending != "" {
		return nil, fmt.Errorf("README.md:%d: the skip marker is not above a ```sh block", at)
	}
	return out, nil
}

func TestReadmeBlocks(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       []block // lines left out
		err        string
	}{
		{name: "sh and other languages", text: "# T\n```sh\necho a\n```\ntext\n```json\n{}\n```\n",
			want: []block{{line: 2, lang: "sh"}, {line: 6, lang: "json"}}},
		{name: "a marked block", text: "<!-- readme-test: skip (a load command) -->\n\n```sh\nmake load\n```\n```sh\necho\n```\n",
			want: []block{{line: 3, lang: "sh", skip: "a load command"}, {line: 6, lang: "sh"}}},
		{name: "a marker above text", text: "<!-- readme-test: skip (why) -->\ntext\n```sh\necho\n```\n", err: "not above a ```sh block"},
		{name: "a marker above json", text: "<!-- readme-test: skip (why) -->\n```json\n{}\n```\n", err: "not ```sh"},
		{name: "a marker without a reason", text: "<!-- readme-test: skip -->\n```sh\necho\n```\n", err: "not a skip marker"},
		{name: "a marker at the end", text: "```sh\necho\n```\n<!-- readme-test: skip (why) -->\n", err: "not above"},
		{name: "an unclosed block", text: "```sh\necho\n", err: "not closed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readmeBlocks(c.text)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i].lines = nil
			}
			if !slices.EqualFunc(got, c.want, func(a, b block) bool { return a.line == b.line && a.lang == b.lang && a.skip == b.skip }) {
				t.Fatalf("blocks %+v, want %+v", got, c.want)
			}
		})
	}
}

// readmeAddr is the address the README's commands call (RALLYE_ADDR's
// default); the test serves elsewhere and rewrites it.
const readmeAddr = "127.0.0.1:8080"

// readmeScript turns the README into one bash script that runs its ```sh
// blocks in order, as one terminal would, skipping the marked ones. Every
// other line becomes empty, so that the script's line numbers are the
// README's: bash's own messages and the ERR trap name README lines.
func readmeScript(text, addr string, blocks []block) string {
	lines := strings.Split(text, "\n")
	out := make([]string, len(lines))
	for _, b := range blocks {
		if b.lang != "sh" || b.skip != "" {
			continue
		}
		// On a line of its own: a command's output may not end with one.
		out[b.line-1] = fmt.Sprintf(`printf '\n== README.md:%d %%s\n' "$(date +%%s.%%N)" >&2`, b.line)
		for i, l := range b.lines {
			l = strings.ReplaceAll(l, readmeAddr, addr)
			out[b.line+i] = strings.ReplaceAll(l, "localhost:8080", addr)
		}
	}
	// Line 1 is the README's title, never a command.
	out[0] = `set -eEo pipefail; trap 'echo "README.md:$LINENO: exit $?: $BASH_COMMAND" >&2' ERR`
	return strings.Join(out, "\n") + "\nprintf '\\n== end %s\\n' \"$(date +%s.%N)\" >&2\n"
}

// TestReadmeCommands runs the README's ```sh blocks, in order, against a
// fresh server started the way `make run` starts it (serve --demo, the
// development secret), on a free port and a fresh database: a command that
// fails, or a value a block checks that differs, fails the test, so that
// the README cannot drift from the code. Blocks marked with skipMarker
// (load commands, a Kubernetes cluster, the test command itself) are not
// run.
func TestReadmeCommands(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readmeBlocks(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	// What the blocks need, as the README lists it.
	for _, tool := range []string{"bash", "curl", "jq", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's commands need %s (Debian's package; .ci/run installs it)", tool)
		}
	}
	if out, err := exec.Command("date", "-u", "-d", "+5 minutes", "+%FT%TZ").CombinedOutput(); err != nil {
		t.Fatalf("the README's commands need GNU date (date -d): %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, ".tools", "node_modules", ".bin", "buf")); err != nil {
		t.Fatal("the README's commands need the pinned buf: run `make tools`")
	}

	// A checkout of its own: the repository's files, and bin/rallye this
	// binary (a developer's bin/ may hold an older build).
	work := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "bin" || e.Name() == ".git" {
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(work, "bin", "rallye")); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, keys := testutil.Redis(t)
	// What a newcomer's shell has: the defaults point at the local
	// PostgreSQL and Redis; here a fresh database and key prefix stand in.
	// RALLYE_JWT_SECRET is not in it: the README's commands must say it.
	env := []string{asCommand + "=1", "DATABASE_URL=" + testutil.DatabaseURL(t),
		"REDIS_URL=" + testutil.RedisURL(), "RALLYE_REDIS_PREFIX=" + keys.Prefix}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RALLYE_") && !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "REDIS_URL=") &&
			!strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "BUF") && !strings.HasPrefix(kv, "TOKEN=") {
			env = append(env, kv)
		}
	}

	// The server, as `make run` starts it.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	server := exec.Command(filepath.Join(work, "bin", "rallye"), "serve", "--demo")
	server.Dir = work
	// Backpressure stays on, at a lag a README run never reaches: a race-built
	// server on a busy CI machine can fall more than the default 5 s behind
	// while the demo seeds, and the README's calls do not retry.
	server.Env = append(slices.Clone(env), "RALLYE_JWT_SECRET=local-development-secret-not-for-production", "RALLYE_ADDR="+addr,
		"RALLYE_INGEST_MAX_LAG=60s")
	var serverOut, serverLog lockedBuffer
	server.Stdout, server.Stderr = &serverOut, &serverLog
	start := time.Now()
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- server.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = server.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(45 * time.Second):
			_ = server.Process.Kill()
			<-exited
			return fmt.Errorf("the server did not stop within 45 s of SIGTERM")
		}
	}
	defer func() { _ = stop() }()
	for {
		res, err := http.Get("http://" + addr + "/console/")
		if err == nil {
			res.Body.Close()
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("the server stopped: %v\n%s", err, serverLog.String())
		case <-ctx.Done():
			t.Fatalf("the server did not answer within its start-up time\n%s", serverLog.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("server up after %v (serve --demo on a fresh database)", time.Since(start).Round(time.Millisecond))

	script := filepath.Join(work, "readme.sh")
	if err := os.WriteFile(script, []byte(readmeScript(string(raw), addr, blocks)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := exec.CommandContext(ctx, "bash", script)
	run.Dir = work
	run.Env = env
	run.Stdin = nil
	var output lockedBuffer
	run.Stdout, run.Stderr = &output, &output
	run.WaitDelay = 5 * time.Second
	runStart := time.Now()
	runErr := run.Run()
	t.Logf("README blocks ran in %v", time.Since(runStart).Round(time.Millisecond))
	logBlockTimes(t, output.String(), blocks)
	if testing.Verbose() {
		t.Logf("their output:\n%s", output.String())
	}
	if runErr != nil {
		t.Fatalf("the README's commands failed (%v); their output, last 150 lines:\n%s\n\nthe server's log, last 40 lines:\n%s",
			runErr, tail(output.String(), 150), tail(serverLog.String(), 40))
	}

	if err := stop(); err != nil {
		t.Fatalf("the server's shutdown: %v\n%s", err, tail(serverLog.String(), 40))
	}
	// The log, once the server has run the README: River's routine lines
	// stay out of it, and the shutdown line says its timeout as a duration.
	shutdown := false
	for l := range strings.Lines(serverLog.String()) {
		if strings.Contains(l, `"component":"jobs"`) && strings.Contains(l, `"level":"INFO"`) {
			t.Errorf("the job queue logs at INFO: %s", l)
		}
		if strings.Contains(l, `"msg":"shutting down"`) {
			shutdown = true
			if !strings.Contains(l, `"timeout":"20s"`) {
				t.Errorf("the shutdown line does not say its timeout as a duration: %s", l)
			}
		}
	}
	if !shutdown {
		t.Errorf("the server logged no shutdown line:\n%s", tail(serverLog.String(), 20))
	}
}

// logBlockTimes logs which blocks ran, which were skipped, and how long
// each took, from the markers readmeScript writes.
func logBlockTimes(t *testing.T, output string, blocks []block) {
	t.Helper()
	marks := regexp.MustCompile(`(?m)^== (README\.md:\d+|end) (\d+\.\d+)$`).FindAllStringSubmatch(output, -1)
	var parse = func(s string) time.Time {
		var sec, nsec int64
		fmt.Sscanf(s, "%d.%d", &sec, &nsec)
		return time.Unix(sec, nsec)
	}
	for i := 0; i+1 < len(marks); i++ {
		t.Logf("ran %s in %v", marks[i][1], parse(marks[i+1][2]).Sub(parse(marks[i][2])).Round(time.Millisecond))
	}
	for _, b := range blocks {
		if b.skip != "" {
			t.Logf("skipped README.md:%d (%s)", b.line, b.skip)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lockedBuffer is an output two goroutines of os/exec may write at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

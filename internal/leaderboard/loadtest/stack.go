package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
)

// The stack ceiling: what the chosen HTTP and Connect stack answers on this
// machine when the handler does nothing but return a ranking recorded from
// the real server (same bytes, marshalled on every call), with no
// authentication, Redis or PostgreSQL. It runs as a separate process, like
// the server, and is read by the same lean client: the distance between it
// and the real RPC is what the leaderboard itself costs; the distance between
// it and the raw Redis ceiling is what HTTP and Connect cost.

// ServeStackCeiling serves GetRanking with the response stored in file (a
// binary GetRankingResponse) on addr until ctx ends.
func ServeStackCeiling(ctx context.Context, addr, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	res := &rallyev1.GetRankingResponse{}
	if err := proto.Unmarshal(b, res); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(rallyev1connect.NewLeaderboardServiceHandler(recordedRanking{res: res}))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{Addr: addr, Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type recordedRanking struct {
	rallyev1connect.UnimplementedLeaderboardServiceHandler
	res *rallyev1.GetRankingResponse
}

func (h recordedRanking) GetRanking(context.Context, *rallyev1.GetRankingRequest) (*rallyev1.GetRankingResponse, error) {
	return h.res, nil
}

// stackCeiling is a started stack-ceiling process.
type stackCeiling struct {
	cmd  *exec.Cmd
	url  string
	file string
}

// startStackCeiling records a real ranking and starts `rallye load
// stack-ceiling` serving it.
func (r *run) startStackCeiling(ctx context.Context, recorded *rallyev1.GetRankingResponse) (*stackCeiling, error) {
	b, err := proto.Marshal(recorded)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp("", "rallye-load-ranking-*.bin")
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	addr, err := freeAddr()
	if err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	s := &stackCeiling{url: "http://" + addr, file: f.Name()}
	s.cmd = exec.CommandContext(ctx, r.c.Binary, "load", "stack-ceiling", "--addr", addr, "--response", f.Name())
	s.cmd.Stderr = os.Stderr
	s.cmd.Cancel = func() error { return s.cmd.Process.Signal(syscall.SIGTERM) }
	if err := s.cmd.Start(); err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("the stack ceiling server did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *stackCeiling) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
	_ = os.Remove(s.file)
}

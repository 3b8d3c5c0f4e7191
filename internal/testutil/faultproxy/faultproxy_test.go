package faultproxy

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// echo serves lines back, upper-cased, and reports each line it received.
func echo(t *testing.T) (addr string, received chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	received = make(chan string, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					received <- strings.TrimSpace(line)
					if _, err := c.Write([]byte(strings.ToUpper(line))); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), received
}

func roundTrip(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	out, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(out), err
}

func TestCutAndRestore(t *testing.T) {
	target, received := echo(t)
	p := Start(t, target)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "hello"); err != nil || got != "HELLO" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	<-received

	p.Cut()
	if _, err := roundTrip(c, "lost"); err == nil {
		t.Fatal("an open connection survived the cut")
	}
	refused, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(refused, "refused"); err == nil {
		t.Fatal("a new connection went through while cut")
	}
	_ = refused.Close()
	if p.Refused() == 0 {
		t.Fatal("the refused connection was not counted")
	}

	p.Restore()
	again, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got, err := roundTrip(again, "back"); err != nil || got != "BACK" {
		t.Fatalf("after the restore: %q, %v", got, err)
	}
}

// TestCutWhenClientSends: the marked data reaches the server, its answer
// is lost, and only a connection that sent the markers in order trips it.
func TestCutWhenClientSends(t *testing.T) {
	target, received := echo(t)
	p := Start(t, target)
	cut := p.CutWhenClientSends([]byte("notify"), []byte("commit"))
	other, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got, err := roundTrip(other, "commit"); err != nil || got != "COMMIT" {
		t.Fatalf("a commit without the first marker: %q, %v", got, err)
	}
	<-received
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "NOTIFY feed"); err != nil || got != "NOTIFY FEED" {
		t.Fatalf("the first marker: %q, %v", got, err)
	}
	<-received
	if _, err := roundTrip(c, "commit"); err == nil {
		t.Fatal("the answer to the marked data came back")
	}
	if got := <-received; got != "commit" {
		t.Fatalf("the server received %q, want the marked data", got)
	}
	select {
	case <-cut:
	case <-time.After(10 * time.Second):
		t.Fatal("the armed cut did not report")
	}
	if p.Up() {
		t.Fatal("the proxy is up after an armed cut")
	}
}

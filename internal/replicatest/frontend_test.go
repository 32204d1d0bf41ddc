package replicatest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
)

func TestFrontEnd_TakesTurnsAndSkipsABackendThatRefuses(t *testing.T) {
	var hosts []string
	var servers []*httptest.Server
	for _, name := range []string{"a", "b"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) }))
		defer s.Close()
		u, _ := url.Parse(s.URL)
		hosts, servers = append(hosts, u.Host), append(servers, s)
	}
	f, err := NewFrontEnd(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A connection a request: each goes to the next backend.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() string {
		t.Helper()
		res, err := c.Get(f.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	var got []string
	for range 4 {
		got = append(got, get())
	}
	if !slices.Equal(got, []string{"a", "b", "a", "b"}) {
		t.Fatalf("answers %v, want a and b in turn", got)
	}
	servers[0].Close()
	got = got[:0]
	for range 3 {
		got = append(got, get())
	}
	if !slices.Equal(got, []string{"b", "b", "b"}) {
		t.Fatalf("with a closed: answers %v, want b only", got)
	}
	want := []Backend{{Addr: hosts[0], Down: true, Forwarded: 2}, {Addr: hosts[1], Forwarded: 5}}
	if got := f.Backends(); !slices.Equal(got, want) {
		t.Fatalf("backends %+v, want %+v: a down after 2 connections, b given 5", got, want)
	}
	servers[1].Close()
	if _, err := c.Get(f.URL()); err == nil {
		t.Fatal("with no backend left, a request was answered")
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// Package pgtest gives tests a real, throwaway PostgreSQL: a fresh
// database per test on the server ISOLATION_TEST_POSTGRES names (DSN),
// or a private server of the test's own that it may stop and start
// (Start), from the distribution's binaries (initdb, pg_ctl).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the admin database (a postgres:// URL) tests create their
// databases on.
const Env = "ISOLATION_TEST_POSTGRES"

// SkipReason is why a test without Env skips.
const SkipReason = "no PostgreSQL: make test starts one; set " + Env + "=postgres://... to use your own"

// DSN returns the URL of a new, empty database on Env's server, dropped
// when the test ends. Without Env the test skips, saying why.
func DSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(Env)
	if admin == "" {
		t.Skip(SkipReason)
	}
	dsn, drop, err := CreateDatabase(context.Background(), admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return dsn
}

// CreateDatabase creates a database with a random name on admin's server
// and returns its URL and the function that drops it.
func CreateDatabase(ctx context.Context, admin string) (dsn string, drop func() error, err error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, fmt.Errorf("%s must be a postgres:// URL", Env)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "isotest_" + hex.EncodeToString(b[:])
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	db := *u
	db.Path = "/" + name
	return db.String(), func() error {
		// FORCE ends the connections a test left open.
		if err := adminExec(context.Background(), admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}, nil
}

func adminExec(ctx context.Context, admin, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// ErrNoBinaries: no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package (.ci/run does)")

// BinDir finds the directory of initdb and pg_ctl: the newest
// /usr/lib/postgresql/*/bin, else the PATH's.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNoBinaries
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Server is a throwaway PostgreSQL on 127.0.0.1, in a temporary
// directory, trusting local connections.
type Server struct {
	// URL is the admin database's (postgres://postgres@127.0.0.1:port/postgres).
	URL string

	bin, dir, data, log string
	port                int
	owner               *user.User // nil: the current user
}

// Start initialises a server in a new temporary directory and starts it.
// As root it runs the server as the postgres user (initdb refuses root).
func Start(ctx context.Context) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		if s.owner, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root, initdb needs the postgres user: %w", err)
		}
	}
	if s.dir, err = os.MkdirTemp("", "isolation-pg-"); err != nil {
		return nil, err
	}
	s.data, s.log = filepath.Join(s.dir, "data"), filepath.Join(s.dir, "server.log")
	if err := s.chown(s.dir); err != nil {
		_ = s.Remove()
		return nil, err
	}
	if out, err := s.run(ctx, "initdb", "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		_ = s.Remove()
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if s.port, err = freePort(); err != nil {
		_ = s.Remove()
		return nil, err
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	if err := s.Restart(ctx); err != nil {
		_ = s.Remove()
		return nil, err
	}
	return s, nil
}

// Restart starts the server again after Stop, on the same port.
func (s *Server) Restart(ctx context.Context) error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=200", s.port, s.dir)
	if out, err := s.run(ctx, "pg_ctl", "-D", s.data, "-l", s.log, "-w", "-t", "60", "-o", opts, "start"); err != nil {
		logs, _ := os.ReadFile(s.log)
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, logs)
	}
	return nil
}

// Stop stops the server (fast: connections are ended) and waits for it.
func (s *Server) Stop(ctx context.Context) error {
	if out, err := s.run(ctx, "pg_ctl", "-D", s.data, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Close stops the server if it runs and removes its directory.
func (s *Server) Close() error {
	var err error
	if _, serr := os.Stat(filepath.Join(s.data, "postmaster.pid")); serr == nil {
		err = s.Stop(context.Background())
	}
	return errors.Join(err, s.Remove())
}

// Remove removes the server's directory.
func (s *Server) Remove() error { return os.RemoveAll(s.dir) }

func (s *Server) chown(path string) error {
	if s.owner == nil {
		return nil
	}
	uid, _ := strconv.Atoi(s.owner.Uid)
	gid, _ := strconv.Atoi(s.owner.Gid)
	return os.Chown(path, uid, gid)
}

// run runs a server binary as the server's owner.
func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.owner != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.owner.Username, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = s.dir
	// The server must not inherit a locale the machine lacks.
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Private starts a server of the test's own (one it may stop), closed at
// the test's end, and returns it with the URL of a fresh database on it.
// Without server binaries the test skips, saying why.
func Private(t testing.TB) (*Server, string) {
	t.Helper()
	s, err := Start(context.Background())
	if errors.Is(err, ErrNoBinaries) {
		t.Skip("no PostgreSQL server binaries: install Debian's postgresql package (.ci/run does) for the tests that stop a server")
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	dsn, _, err := CreateDatabase(context.Background(), s.URL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s, dsn
}

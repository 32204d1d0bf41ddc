package initspec

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Exec sessions: the runtime asks the init, over a unix socket the
// runtime made on the host and gave the init at its start (FlagExecFD),
// to start a command; no runc process runs per session.
//
// On one connection, one session:
//
//	runtime → init  ExecRequest, with the command's stdin, stdout and stderr (no terminal)
//	init → runtime  ExecReply{Started}, with the command's pidfd (and the terminal's master), or {Error}
//	init → runtime  ExecReply{Exited}, once the init has reaped the command
//	runtime → init  the end of its writes (or of the connection): the session is over
//	init → runtime  ExecReply{Error} when some of its processes outlived SIGKILL, then the end
//
// Once the runtime's writes end, the init hangs the session up: SIGHUP
// and SIGCONT to every process of the command's session, SIGKILL to
// those left after ExecGrace; it then closes the connection. A runtime
// that dies ends its writes too, so no session outlives it.

// FlagExecFD names the descriptor of the listening socket the init
// accepts exec sessions on (runc's --preserve-fds passes it).
const FlagExecFD = "--exec-fd"

// ExecGrace is how long a hung-up session's processes have between
// SIGHUP and SIGKILL.
const ExecGrace = 2 * time.Second

// ExecRequest is a command to start: its process as the runtime works it
// out from the workload's and the request's.
type ExecRequest struct {
	Args   []string `json:"args"`
	Env    []string `json:"env"`
	Cwd    string   `json:"cwd"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups"`
	// TTY asks for a terminal of the container (from its /dev/ptmx) of
	// Rows×Cols, the command's controlling terminal; without it, the
	// request carries three descriptors: stdin, stdout and stderr.
	TTY  bool   `json:"tty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// ExecReply is one of the init's messages on a session's connection.
type ExecReply struct {
	// Started: the command runs; the message carries its pidfd, then the
	// terminal's master when it has one.
	Started bool `json:"started,omitempty"`
	// Exited: the command has exited, with Code (128+N when signal N
	// killed it) and Signal ("KILL", "" when it exited).
	Exited bool   `json:"exited,omitempty"`
	Code   int    `json:"code,omitempty"`
	Signal string `json:"signal,omitempty"`
	// Error is why the command could not start (ENOENT, EACCES: Errno),
	// or what went wrong hanging its session up.
	Error string        `json:"error,omitempty"`
	Errno syscall.Errno `json:"errno,omitempty"`
}

// maxMessage bounds a message: the kernel's limit on a command's
// arguments and environment is smaller.
const maxMessage = 4 << 20

// maxFDs is the most descriptors a message carries.
const maxFDs = 3

// WriteMessage sends v, JSON after its length, with files attached.
func WriteMessage(c *net.UnixConn, v any, files ...*os.File) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	msg := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b))) //nolint:gosec // G115: bounded by maxMessage on read; a longer one is refused there
	msg = append(msg, b...)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(msg, oob, nil)
	if err == nil && n < len(msg) {
		_, err = c.Write(msg[n:]) // the descriptors went with the first bytes
	}
	return err
}

// ReadMessage reads one message into v and returns the files that came
// with it (close-on-exec); io.EOF when the connection ended before one.
func ReadMessage(c *net.UnixConn, v any) ([]*os.File, error) {
	var head [4]byte
	oob := make([]byte, syscall.CmsgSpace(maxFDs*4))
	// The descriptors come with the message's first bytes, which the
	// kernel never merges with those of an earlier message.
	n, oobn, _, _, err := c.ReadMsgUnix(head[:], oob)
	files, ferr := receivedFiles(oob[:oobn])
	if err == nil {
		err = ferr
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	if err == nil && n < len(head) {
		_, err = io.ReadFull(c, head[n:])
	}
	var body []byte
	if err == nil {
		size := binary.BigEndian.Uint32(head[:])
		if size > maxMessage {
			err = fmt.Errorf("exec message of %d bytes: more than %d", size, maxMessage)
		} else {
			body = make([]byte, size)
			_, err = io.ReadFull(c, body)
		}
	}
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("exec message cut short: %w", err)
		}
		return nil, err
	}
	return files, nil
}

func receivedFiles(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := range msgs {
		fds, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "exec"))
		}
	}
	return files, nil
}

// Package sockets finds and forcibly closes the TCP sockets of a process, the
// way `ss -K` does: it matches the socket inodes in /proc/PID/fd against a
// NETLINK_SOCK_DIAG dump and aborts each socket with SOCK_DESTROY.
//
// A destroyed socket is aborted by the kernel: the peer is sent a RST and the
// owning process sees ECONNABORTED on its next (or pending) call. The socket
// is closed for every process that holds it, not only pid.
//
// Sockets are looked up in the network namespace of the target process, which
// may differ from the caller's (containers); entering it needs CAP_SYS_ADMIN.
// Destroying needs CAP_NET_ADMIN and a kernel with CONFIG_INET_DIAG_DESTROY.
//
// MPTCP sockets (Go has listened with MPTCP by default since Go 1.24) show up
// in the TCP dump as their TCP subflows, and SOCK_DESTROY does not close them:
// the kernel refuses it for a listening subflow (EINVAL, as with ss -K), and
// destroying an established subflow leaves the MPTCP socket above it open,
// with its owner still blocked. Destroy shuts those sockets down instead,
// through a duplicate of the process's file descriptor (pidfd_getfd, which
// needs ptrace rights over the process: CAP_SYS_PTRACE).
package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is one TCP socket of a process.
type Socket struct {
	Inode         uint64
	Family        int // unix.AF_INET or unix.AF_INET6
	Local, Remote netip.AddrPort
	State         uint8 // TCP state number from inet_diag (see StateName)
	MPTCP         bool  // a subflow of an MPTCP socket (tcp-ulp-mptcp)

	// From the dump, to name the socket exactly in SOCK_DESTROY.
	ifindex uint32
	cookie  [2]uint32 // zero: not from a dump, destroy by tuple alone
	ns      netns
	// A process and file descriptor holding the socket, to shut an MPTCP
	// socket down (zero if not listed from a process).
	owner, fd int
}

// TCP states as inet_diag reports them (include/net/tcp_states.h).
const (
	StateEstablished   = 1
	StateSynSent       = 2
	StateSynRecv       = 3
	StateFinWait1      = 4
	StateFinWait2      = 5
	StateTimeWait      = 6
	StateClose         = 7
	StateCloseWait     = 8
	StateLastAck       = 9
	StateListen        = 10
	StateClosing       = 11
	StateNewSynRecv    = 12
	StateBoundInactive = 13
)

var stateNames = [...]string{
	StateEstablished:   "ESTABLISHED",
	StateSynSent:       "SYN-SENT",
	StateSynRecv:       "SYN-RECV",
	StateFinWait1:      "FIN-WAIT-1",
	StateFinWait2:      "FIN-WAIT-2",
	StateTimeWait:      "TIME-WAIT",
	StateClose:         "CLOSE",
	StateCloseWait:     "CLOSE-WAIT",
	StateLastAck:       "LAST-ACK",
	StateListen:        "LISTEN",
	StateClosing:       "CLOSING",
	StateNewSynRecv:    "NEW-SYN-RECV",
	StateBoundInactive: "BOUND-INACTIVE",
}

// StateName is the name ss uses for the socket's TCP state.
func (s Socket) StateName() string {
	if int(s.State) < len(stateNames) && stateNames[s.State] != "" {
		return stateNames[s.State]
	}
	return "STATE-" + strconv.Itoa(int(s.State))
}

func (s Socket) String() string {
	fam := "tcp"
	if s.Family == unix.AF_INET6 {
		fam = "tcp6"
	}
	return fmt.Sprintf("%s %s -> %s %s (inode %d)", fam, s.Local, s.Remote, s.StateName(), s.Inode)
}

// OfProcess lists the TCP sockets (IPv4 and IPv6) whose file descriptors
// process pid holds. The addresses of an AF_INET6 socket talking IPv4 are
// given unmapped (1.2.3.4, not ::ffff:1.2.3.4).
func OfProcess(pid int) ([]Socket, error) {
	socks, c, err := ofProcess(pid)
	if c != nil {
		c.close()
	}
	return socks, err
}

// ofProcess is OfProcess that also returns the sock_diag connection it used,
// which is in pid's network namespace (nil if pid holds no sockets at all).
func ofProcess(pid int) ([]Socket, *conn, error) {
	if pid <= 0 {
		return nil, nil, fmt.Errorf("process %d: invalid pid", pid)
	}
	ns, err := netnsOf(pid)
	if err != nil {
		return nil, nil, err
	}
	inodes, err := socketInodes(pid)
	if err != nil {
		return nil, nil, err
	}
	if len(inodes) == 0 {
		return []Socket{}, nil, nil
	}
	c, err := dial(ns)
	if err != nil {
		return nil, nil, err
	}
	socks := []Socket{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		err := c.dump(fam, func(s Socket) {
			if fd, ok := inodes[s.Inode]; ok {
				s.ns, s.owner, s.fd = ns, pid, fd
				socks = append(socks, s)
			}
		})
		if err != nil && !(fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT)) {
			c.close()
			return nil, nil, err
		}
	}
	return socks, c, nil
}

// Destroy closes one socket with SOCK_DESTROY, naming it by its exact id from
// the dump (addresses, ports, interface and cookie), so a socket that has
// since been replaced by another with the same addresses is left alone. A
// socket that no longer exists gives an error wrapping unix.ENOENT.
//
// An MPTCP socket is first shut down (shutdown(2) SHUT_RDWR) through the file
// descriptor it was listed under: a listener stops listening, and the owner
// of a connection reads EOF rather than getting ECONNABORTED. The subflow of
// a connection is then destroyed, so the peer gets a RST.
func Destroy(s Socket) error {
	c, err := dial(s.ns)
	if err != nil {
		return err
	}
	defer c.close()
	return c.destroy(s)
}

// CloseProcess destroys every TCP socket of pid matching filter (nil: all)
// and returns the sockets it closed and the first error; it keeps going after
// an error. Listening sockets are skipped unless includeListeners. Sockets
// that disappear before they are destroyed are skipped silently.
func CloseProcess(pid int, filter func(Socket) bool, includeListeners bool) ([]Socket, error) {
	socks, c, err := ofProcess(pid)
	if err != nil {
		return nil, err
	}
	closed := []Socket{}
	if c == nil {
		return closed, nil
	}
	defer c.close()
	var first error
	for _, s := range socks {
		switch {
		case s.State == StateListen && !includeListeners,
			s.State == StateBoundInactive, // bound, never listened or connected: nothing to abort
			filter != nil && !filter(s):
			continue
		}
		err := c.destroy(s)
		switch {
		case err == nil:
			closed = append(closed, s)
		case errors.Is(err, unix.ENOENT):
			// Gone in the meantime (or closed along with its peer).
		case first == nil:
			first = fmt.Errorf("process %d: %s: %w", pid, s, err)
		}
	}
	return closed, first
}

// socketInodes reads the inodes of the sockets in /proc/PID/fd, each with
// one of the descriptors it is open as.
func socketInodes(pid int) (map[uint64]int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	f, err := os.Open(dir)
	if err != nil {
		return nil, procErr(pid, dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, procErr(pid, dir, err)
	}
	inodes := map[uint64]int{}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		link, err := os.Readlink(dir + "/" + name)
		if err != nil {
			continue // closed while we looked
		}
		n, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(n, "]"), 10, 64); err == nil {
			inodes[ino] = fd
		}
	}
	return inodes, nil
}

func procErr(pid int, path string, err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("process %d: %w", pid, unix.ESRCH)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("process %d: reading %s: %w", pid, path, err)
}

// netns names the network namespace sockets are looked up in: the zero value
// is the caller's own, otherwise that of process pid, which must still be the
// namespace with this device and inode number.
type netns struct {
	pid      int
	dev, ino uint64
}

func netnsOf(pid int) (netns, error) {
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	var self, st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return netns{}, procErr(pid, path, err)
	}
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return netns{}, fmt.Errorf("own network namespace: %w", err)
	}
	if st.Dev == self.Dev && st.Ino == self.Ino {
		return netns{}, nil
	}
	return netns{pid: pid, dev: st.Dev, ino: st.Ino}, nil
}

// conn is a NETLINK_SOCK_DIAG socket.
type conn struct {
	fd  int
	seq uint32
	buf []byte
}

const replyTimeout = 10 * time.Second

func dial(ns netns) (*conn, error) {
	var fd int
	var err error
	if ns.pid == 0 {
		fd, err = newDiagSocket()
	} else {
		fd, err = diagSocketIn(ns)
	}
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(replyTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sock_diag: setting receive timeout: %w", err)
	}
	return &conn{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func newDiagSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag: opening netlink socket: %w", err)
	}
	return fd, nil
}

// diagSocketIn opens the sock_diag socket inside the network namespace of
// ns.pid: a netlink socket stays in the namespace it was created in.
func diagSocketIn(ns netns) (int, error) {
	path := fmt.Sprintf("/proc/%d/ns/net", ns.pid)
	nsfd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, procErr(ns.pid, path, err)
	}
	defer unix.Close(nsfd)
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil {
		return -1, fmt.Errorf("process %d: network namespace: %w", ns.pid, err)
	}
	if st.Dev != ns.dev || st.Ino != ns.ino {
		return -1, fmt.Errorf("process %d: network namespace changed since the sockets were listed", ns.pid)
	}

	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Only this thread changes namespace. If it cannot be put back it
		// stays locked, and the runtime discards it when the goroutine ends.
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, fmt.Errorf("own network namespace: %w", err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			hint := ""
			if errors.Is(err, unix.EPERM) {
				hint = " (needs CAP_SYS_ADMIN)"
			}
			done <- result{-1, fmt.Errorf("process %d: entering its network namespace: %w%s", ns.pid, err, hint)}
			return
		}
		fd, err := newDiagSocket()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

func (c *conn) close() { unix.Close(c.fd) }

// Sizes of the kernel's structs (include/uapi/linux/inet_diag.h).
const (
	sizeofSockID   = 48 // struct inet_diag_sockid
	sizeofReqV2    = 8 + sizeofSockID
	sizeofDiagMsg  = 4 + sizeofSockID + 20
	noCookie       = ^uint32(0) // INET_DIAG_NOCOOKIE
	allStates      = ^uint32(0)
	nlmsgHdrLen    = unix.SizeofNlMsghdr
	nlmsgErrHdrLen = 4
	opDestroy      = "sock_diag destroy"

	// inet_diag attributes. The ULP name comes with INET_DIAG_INFO.
	attrInfo    = 2  // INET_DIAG_INFO
	attrULPInfo = 19 // INET_DIAG_ULP_INFO, nesting:
	attrULPName = 1  //   INET_ULP_INFO_NAME
	extInfo     = 1 << (attrInfo - 1)
)

// request builds a netlink message carrying an inet_diag_req_v2.
func (c *conn) request(typ, flags uint16, family, ext uint8, states uint32, id [sizeofSockID]byte) []byte {
	c.seq++
	b := make([]byte, nlmsgHdrLen+sizeofReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], c.seq)
	r := b[nlmsgHdrLen:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	r[2] = ext
	ne.PutUint32(r[4:], states)
	copy(r[8:], id[:])
	return b
}

// roundTrip sends msg and hands each reply message of the same sequence
// number to fn until the kernel says it is done (NLMSG_DONE, or the ack or
// error answering a request that is not a dump).
func (c *conn) roundTrip(op string, msg []byte, fn func(message)) error {
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("%s: sending request: %w", op, err)
	}
	for {
		n, _, flags, _, err := unix.Recvmsg(c.fd, c.buf, nil, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return fmt.Errorf("%s: no reply from the kernel within %v", op, replyTimeout)
		case err != nil:
			return fmt.Errorf("%s: reading reply: %w", op, err)
		case flags&unix.MSG_TRUNC != 0:
			return fmt.Errorf("%s: reply larger than %d bytes", op, len(c.buf))
		}
		msgs, err := parseMessages(c.buf[:n])
		if err != nil {
			return fmt.Errorf("%s: parsing reply: %w", op, err)
		}
		for _, m := range msgs {
			if m.seq != c.seq {
				continue // stale reply to an earlier request
			}
			switch m.typ {
			case unix.NLMSG_DONE:
				if len(m.data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.data)); e < 0 {
						return errnoErr(op, unix.Errno(-e))
					}
				}
				return nil
			case unix.NLMSG_ERROR:
				if len(m.data) < nlmsgErrHdrLen {
					return fmt.Errorf("%s: short error reply", op)
				}
				if e := int32(binary.NativeEndian.Uint32(m.data)); e < 0 {
					return errnoErr(op, unix.Errno(-e))
				}
				return nil // ack
			default:
				fn(m)
			}
		}
	}
}

// message is one netlink message of a reply.
type message struct {
	typ  uint16
	seq  uint32
	data []byte
}

// parseMessages splits a datagram into its netlink messages.
func parseMessages(b []byte) ([]message, error) {
	var msgs []message
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return nil, fmt.Errorf("bad message length %d", l)
		}
		msgs = append(msgs, message{typ: ne.Uint16(b[4:]), seq: ne.Uint32(b[8:]), data: b[nlmsgHdrLen:l]})
		l = (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return msgs, nil
}

func errnoErr(op string, errno unix.Errno) error {
	if op == opDestroy {
		switch errno {
		case unix.EPERM, unix.EACCES:
			return fmt.Errorf("%s: %w (needs CAP_NET_ADMIN)", op, errno)
		case unix.EOPNOTSUPP:
			return fmt.Errorf("%s: %w (kernel needs CONFIG_INET_DIAG_DESTROY)", op, errno)
		}
	}
	return fmt.Errorf("%s: %w", op, errno)
}

// dump lists all TCP sockets of family.
func (c *conn) dump(family uint8, fn func(Socket)) error {
	msg := c.request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, family, extInfo, allStates, [sizeofSockID]byte{})
	var bad error
	err := c.roundTrip("sock_diag dump", msg, func(m message) {
		if m.typ != unix.SOCK_DIAG_BY_FAMILY {
			return
		}
		if len(m.data) < sizeofDiagMsg {
			bad = fmt.Errorf("sock_diag dump: short inet_diag_msg (%d bytes)", len(m.data))
			return
		}
		fn(parseDiagMsg(m.data))
	})
	if err == nil {
		err = bad
	}
	return err
}

// parseDiagMsg decodes a struct inet_diag_msg and the attributes after it.
func parseDiagMsg(b []byte) Socket {
	ne := binary.NativeEndian
	id := b[4 : 4+sizeofSockID]
	s := Socket{
		Family:  int(b[0]),
		State:   b[1],
		Inode:   uint64(ne.Uint32(b[4+sizeofSockID+16:])),
		ifindex: ne.Uint32(id[36:]),
		cookie:  [2]uint32{ne.Uint32(id[40:]), ne.Uint32(id[44:])},
	}
	addr := func(a []byte) netip.Addr {
		if s.Family == unix.AF_INET {
			return netip.AddrFrom4([4]byte(a[:4]))
		}
		return netip.AddrFrom16([16]byte(a[:16])).Unmap()
	}
	s.Local = netip.AddrPortFrom(addr(id[4:20]), binary.BigEndian.Uint16(id[0:]))
	s.Remote = netip.AddrPortFrom(addr(id[20:36]), binary.BigEndian.Uint16(id[2:]))
	if ulp, ok := attr(b[sizeofDiagMsg:], attrULPInfo); ok {
		if name, ok := attr(ulp, attrULPName); ok {
			s.MPTCP = strings.TrimRight(string(name), "\x00") == "mptcp"
		}
	}
	return s
}

// attr finds the netlink attribute of type typ in b.
func attr(b []byte, typ uint16) ([]byte, bool) {
	const hdr = 4 // struct nlattr
	ne := binary.NativeEndian
	for len(b) >= hdr {
		l := int(ne.Uint16(b[0:]))
		if l < hdr || l > len(b) {
			return nil, false
		}
		if ne.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER) == typ {
			return b[hdr:l], true
		}
		l = (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return nil, false
}

// sockID encodes the struct inet_diag_sockid naming s.
func sockID(s Socket) ([sizeofSockID]byte, error) {
	var id [sizeofSockID]byte
	put := func(dst []byte, a netip.Addr) error {
		switch {
		case !a.IsValid():
			// Unspecified (all zeros).
		case s.Family == unix.AF_INET:
			if !a.Unmap().Is4() {
				return fmt.Errorf("IPv6 address %s on an AF_INET socket", a)
			}
			b := a.Unmap().As4()
			copy(dst, b[:])
		default:
			b := a.As16() // IPv4 comes out v4-mapped, as the kernel has it
			copy(dst, b[:])
		}
		return nil
	}
	if s.Family != unix.AF_INET && s.Family != unix.AF_INET6 {
		return id, fmt.Errorf("address family %d is not AF_INET or AF_INET6", s.Family)
	}
	binary.BigEndian.PutUint16(id[0:], s.Local.Port())
	binary.BigEndian.PutUint16(id[2:], s.Remote.Port())
	if err := put(id[4:20], s.Local.Addr()); err != nil {
		return id, err
	}
	if err := put(id[20:36], s.Remote.Addr()); err != nil {
		return id, err
	}
	ne := binary.NativeEndian
	ne.PutUint32(id[36:], s.ifindex)
	cookie := s.cookie
	if cookie == [2]uint32{} {
		cookie = [2]uint32{noCookie, noCookie}
	}
	ne.PutUint32(id[40:], cookie[0])
	ne.PutUint32(id[44:], cookie[1])
	return id, nil
}

// destroy closes s, as Destroy describes.
func (c *conn) destroy(s Socket) error {
	if !s.MPTCP {
		return c.sockDestroy(s)
	}
	if err := shutdownMPTCP(s); err != nil {
		return err
	}
	if s.State != StateListen {
		// Best effort, to reset the peer now: the socket is already closed
		// for its owner, and the subflow may be gone with the shutdown.
		c.sockDestroy(s)
	}
	return nil
}

// sockDestroy sends SOCK_DESTROY for s. A socket that is gone, or whose tuple
// now belongs to another socket (the kernel's ESTALE on a cookie mismatch),
// gives an error wrapping unix.ENOENT.
func (c *conn) sockDestroy(s Socket) error {
	const op = opDestroy
	id, err := sockID(s)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	msg := c.request(unix.SOCK_DESTROY, unix.NLM_F_REQUEST|unix.NLM_F_ACK, uint8(s.Family), 0, 0, id)
	err = c.roundTrip(op, msg, func(message) {})
	if errors.Is(err, unix.ESTALE) {
		return fmt.Errorf("%s: socket was replaced by another with the same addresses: %w", op, unix.ENOENT)
	}
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: socket no longer exists: %w", op, unix.ENOENT)
	}
	if errors.Is(err, unix.EINVAL) && s.State == StateListen {
		return fmt.Errorf("%w (an MPTCP listener? those can only be shut down through a Socket from OfProcess)", err)
	}
	return err
}

// shutdownMPTCP shuts down an MPTCP socket through a duplicate of the file
// descriptor its process holds it as.
func shutdownMPTCP(s Socket) error {
	const op = "mptcp shutdown"
	if s.owner <= 0 {
		return fmt.Errorf("%s: SOCK_DESTROY cannot close MPTCP sockets, and this one was not listed from a process", op)
	}
	gone := func(why string) error {
		return fmt.Errorf("%s: %s: %w", op, why, unix.ENOENT)
	}
	pidfd, err := unix.PidfdOpen(s.owner, 0)
	if errors.Is(err, unix.ESRCH) {
		return gone(fmt.Sprintf("process %d exited", s.owner))
	}
	if err != nil {
		return fmt.Errorf("%s: pidfd_open %d: %w", op, s.owner, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, s.fd, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return gone(fmt.Sprintf("process %d exited", s.owner))
	case errors.Is(err, unix.EBADF):
		return gone(fmt.Sprintf("process %d closed fd %d", s.owner, s.fd))
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%s: pidfd_getfd of process %d: %w (needs CAP_SYS_PTRACE)", op, s.owner, err)
	case err != nil:
		return fmt.Errorf("%s: pidfd_getfd of process %d: %w", op, s.owner, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if st.Ino != s.Inode {
		return gone(fmt.Sprintf("fd %d of process %d is no longer socket inode %d", s.fd, s.owner, s.Inode))
	}
	err = unix.Shutdown(fd, unix.SHUT_RDWR)
	if errors.Is(err, unix.ENOTCONN) {
		return gone("socket already closed")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

package tcnetlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Kernel uapi constants that golang.org/x/sys/unix does not define.
// Values from include/uapi/linux/pkt_sched.h and pkt_cls.h.
const (
	tcHMajMask    = 0xFFFF0000
	tcHMinMask    = 0x0000FFFF
	tcHClsact     = 0xFFFFFFF1 // TC_H_CLSACT == TC_H_INGRESS
	tcHMinIngress = 0xFFF2     // TC_H_MIN_INGRESS
	tcHMinEgress  = 0xFFF3     // TC_H_MIN_EGRESS

	tcaChain = 11 // TCA_CHAIN (enum after TCA_DUMP_INVISIBLE)

	tcaBPFFD    = 6  // TCA_BPF_FD
	tcaBPFName  = 7  // TCA_BPF_NAME
	tcaBPFFlags = 8  // TCA_BPF_FLAGS
	tcaBPFID    = 11 // TCA_BPF_ID

	tcaBPFFlagActDirect = 1 << 0 // TCA_BPF_FLAG_ACT_DIRECT

	sizeofTcMsg = 20 // struct tcmsg

	nlaTypeMask = 0x3FFF // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
)

// ioTimeout bounds every wait for a kernel reply.
const ioTimeout = 5 * time.Second

// tcHMake is TC_H_MAKE(maj, min).
func tcHMake(maj, min uint32) uint32 {
	return (maj & tcHMajMask) | (min & tcHMinMask)
}

// htons converts a 16-bit value from host to network byte order.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// tcMsg is struct tcmsg.
type tcMsg struct {
	Family  uint8
	Ifindex int32
	Handle  uint32
	Parent  uint32
	Info    uint32
}

func (m tcMsg) marshal() []byte {
	b := make([]byte, sizeofTcMsg)
	b[0] = m.Family
	binary.NativeEndian.PutUint32(b[4:], uint32(m.Ifindex))
	binary.NativeEndian.PutUint32(b[8:], m.Handle)
	binary.NativeEndian.PutUint32(b[12:], m.Parent)
	binary.NativeEndian.PutUint32(b[16:], m.Info)
	return b
}

func parseTcMsg(b []byte) (tcMsg, []byte, error) {
	if len(b) < sizeofTcMsg {
		return tcMsg{}, nil, fmt.Errorf("short tcmsg (%d bytes)", len(b))
	}
	m := tcMsg{
		Family:  b[0],
		Ifindex: int32(binary.NativeEndian.Uint32(b[4:])),
		Handle:  binary.NativeEndian.Uint32(b[8:]),
		Parent:  binary.NativeEndian.Uint32(b[12:]),
		Info:    binary.NativeEndian.Uint32(b[16:]),
	}
	return m, b[sizeofTcMsg:], nil
}

// attr is one netlink attribute to encode; either Data or Nested is used.
type attr struct {
	Type   uint16
	Data   []byte
	Nested []attr
}

func nlaAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

func attrU32(typ uint16, v uint32) attr {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return attr{Type: typ, Data: b}
}

func attrString(typ uint16, s string) attr {
	return attr{Type: typ, Data: append([]byte(s), 0)}
}

func encodeAttrs(dst []byte, attrs []attr) []byte {
	for _, a := range attrs {
		payload := a.Data
		if a.Nested != nil {
			payload = encodeAttrs(nil, a.Nested)
		}
		l := unix.SizeofRtAttr + len(payload)
		var hdr [unix.SizeofRtAttr]byte
		binary.NativeEndian.PutUint16(hdr[0:], uint16(l))
		binary.NativeEndian.PutUint16(hdr[2:], a.Type)
		dst = append(dst, hdr[:]...)
		dst = append(dst, payload...)
		for i := l; i < nlaAlign(l); i++ {
			dst = append(dst, 0)
		}
	}
	return dst
}

// parseAttrs decodes a flat attribute list into type -> payload (the
// NLA_F_NESTED and NLA_F_NET_BYTEORDER bits are stripped from the type).
func parseAttrs(b []byte) map[uint16][]byte {
	out := make(map[uint16][]byte)
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		typ := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		out[typ] = b[unix.SizeofRtAttr:l]
		if nlaAlign(l) >= len(b) {
			break
		}
		b = b[nlaAlign(l):]
	}
	return out
}

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// nlMessage is one decoded netlink message.
type nlMessage struct {
	Type  uint16
	Flags uint16
	Seq   uint32
	Data  []byte
}

func parseMessages(b []byte) ([]nlMessage, error) {
	var msgs []nlMessage
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return nil, fmt.Errorf("malformed netlink message (length %d, %d bytes left)", l, len(b))
		}
		msgs = append(msgs, nlMessage{
			Type:  binary.NativeEndian.Uint16(b[4:]),
			Flags: binary.NativeEndian.Uint16(b[6:]),
			Seq:   binary.NativeEndian.Uint32(b[8:]),
			Data:  b[unix.SizeofNlMsghdr:l],
		})
		al := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if al >= len(b) {
			break
		}
		b = b[al:]
	}
	return msgs, nil
}

// kernelError is a negative errno from an NLMSG_ERROR reply, with the
// extended-ack message if the kernel supplied one.
type kernelError struct {
	Errno unix.Errno
	Msg   string
}

func (e *kernelError) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("%v (kernel: %s)", e.Errno, e.Msg)
	}
	return e.Errno.Error()
}

func (e *kernelError) Unwrap() error { return e.Errno }

// parseErrorMsg decodes the payload of an NLMSG_ERROR message. It returns
// nil for an ACK (error code 0).
func parseErrorMsg(m nlMessage) error {
	if len(m.Data) < 4 {
		return fmt.Errorf("short NLMSG_ERROR (%d bytes)", len(m.Data))
	}
	code := int32(binary.NativeEndian.Uint32(m.Data))
	if code == 0 {
		return nil
	}
	kerr := &kernelError{Errno: unix.Errno(-code)}
	if m.Flags&unix.NLM_F_ACK_TLVS != 0 && len(m.Data) >= unix.SizeofNlMsgerr {
		// struct nlmsgerr is followed by the original request (only its
		// header when NLM_F_CAPPED), then the extended-ack attributes.
		off := unix.SizeofNlMsgerr
		if m.Flags&unix.NLM_F_CAPPED == 0 {
			origLen := int(binary.NativeEndian.Uint32(m.Data[4:]))
			off = 4 + ((origLen + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1))
		}
		if off <= len(m.Data) {
			if msg, ok := parseAttrs(m.Data[off:])[unix.NLMSGERR_ATTR_MSG]; ok {
				kerr.Msg = strings.TrimSpace(cString(msg))
			}
		}
	}
	return kerr
}

// conn is a NETLINK_ROUTE socket. It is bound to the network namespace of
// the thread that created it for its whole life.
type conn struct {
	fd  int
	seq uint32
	buf []byte
}

func dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	// Best effort: extended error messages and capped acks.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	tv := unix.NsecToTimeval(ioTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set rtnetlink receive timeout: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set rtnetlink send timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind rtnetlink socket: %w", err)
	}
	return &conn{fd: fd, seq: uint32(time.Now().UnixNano()), buf: make([]byte, 1<<16)}, nil
}

func (c *conn) close() error {
	if c == nil || c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// request sends one message and collects the replies that carry its
// sequence number. A plain request ends at the kernel's ACK (the request
// always carries NLM_F_ACK); a dump ends at NLMSG_DONE. Messages other than
// the ACK/DONE (a doit's reply, NLM_F_ECHO copies, dump entries) are
// returned.
func (c *conn) request(typ, flags uint16, body []byte) ([]nlMessage, error) {
	if c.fd < 0 {
		return nil, errors.New("rtnetlink socket is closed")
	}
	dump := flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	flags |= unix.NLM_F_REQUEST
	if !dump {
		flags |= unix.NLM_F_ACK
	}
	c.seq++
	seq := c.seq

	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	msg = append(msg, body...)

	for {
		err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("send rtnetlink request: %w", err)
		}
		break
	}

	var out []nlMessage
	deadline := time.Now().Add(ioTimeout)
	for {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no rtnetlink reply within %v", ioTimeout)
		}
		n, _, rflags, from, err := unix.Recvmsg(c.fd, c.buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN || err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("no rtnetlink reply within %v", ioTimeout)
		}
		if err != nil {
			return nil, fmt.Errorf("receive rtnetlink reply: %w", err)
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return nil, errors.New("rtnetlink reply truncated")
		}
		if sa, ok := from.(*unix.SockaddrNetlink); ok && sa.Pid != 0 {
			continue // not from the kernel
		}
		msgs, err := parseMessages(c.buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Seq != seq {
				continue // stale reply to an earlier, abandoned request
			}
			switch m.Type {
			case unix.NLMSG_ERROR:
				if err := parseErrorMsg(m); err != nil {
					return nil, err
				}
				if !dump {
					return out, nil
				}
			case unix.NLMSG_DONE:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data)); code < 0 {
						return nil, &kernelError{Errno: unix.Errno(-code)}
					}
				}
				return out, nil
			case unix.NLMSG_NOOP:
			default:
				data := make([]byte, len(m.Data))
				copy(data, m.Data)
				m.Data = data
				out = append(out, m)
			}
		}
	}
}

// linkName returns the name of ifindex, or an error wrapping ENODEV when
// there is no such interface in the socket's network namespace.
func (c *conn) linkName(ifindex int) (string, error) {
	body := make([]byte, unix.SizeofIfInfomsg)
	body[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(body[4:], uint32(int32(ifindex)))
	msgs, err := c.request(unix.RTM_GETLINK, 0, body)
	if err != nil {
		return "", err
	}
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		if name, ok := parseAttrs(m.Data[unix.SizeofIfInfomsg:])[unix.IFLA_IFNAME]; ok {
			return cString(name), nil
		}
	}
	return "", nil
}

// tcObject is one decoded qdisc or filter message.
type tcObject struct {
	Msg     tcMsg
	Kind    string
	Chain   uint32
	Options map[uint16][]byte
}

func parseTcObject(m nlMessage) (tcObject, error) {
	tm, rest, err := parseTcMsg(m.Data)
	if err != nil {
		return tcObject{}, err
	}
	attrs := parseAttrs(rest)
	obj := tcObject{Msg: tm, Kind: cString(attrs[unix.TCA_KIND])}
	if ch, ok := attrs[tcaChain]; ok && len(ch) >= 4 {
		obj.Chain = binary.NativeEndian.Uint32(ch)
	}
	if opts, ok := attrs[unix.TCA_OPTIONS]; ok {
		obj.Options = parseAttrs(opts)
	}
	return obj, nil
}

func (c *conn) tcRequest(typ, flags uint16, tm tcMsg, attrs []attr) ([]tcObject, error) {
	msgs, err := c.request(typ, flags, encodeAttrs(tm.marshal(), attrs))
	if err != nil {
		return nil, err
	}
	var objs []tcObject
	for _, m := range msgs {
		switch m.Type {
		case unix.RTM_NEWQDISC, unix.RTM_NEWTFILTER:
		default:
			continue
		}
		obj, err := parseTcObject(m)
		if err != nil {
			return nil, err
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

func nativeU32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

package reqmon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/cilium/ebpf"
)

// Map and stream names in the manifest.
const (
	ProbeName   = "reqmon"
	MapReqs     = "reqs"
	MapThreads  = "threads"
	MapListen   = "listen_ports"
	MapStats    = "rq_stats"
	MapBoxes    = "rq_boxes"    // the agent's benign boxes (rq_box)
	MapFilter   = "rq_filter"   // how many boxes are in use (rq_filter_val)
	MapMappers  = "rq_mappers"  // request mappers' actions (rq_mapper)
	ProgSend    = "reqmon_send" // the socket-send hook (optional)
	StreamDone  = "requests"
	ParamAll    = "rp_watch_all"
	ParamMemory = "track_memory"
	ParamFaults = "track_faults"
)

// MaxBoxes is how many benign boxes the kernel holds; NFeatures is the
// number of resources in a box, in the order of enum rq_feature.
const (
	MaxBoxes  = 16
	NFeatures = int(reqmonRqFeatureRQ_NFEATURES)
)

// Box is one benign box: a completed request with every resource at most
// Max is counted in the kernel (stat StatPassed), not streamed.
type Box = reqmonRqBox

// Filter is rq_filter's value. SampleMask streams one benign request in
// SampleMask+1 anyway (a power of two minus one; 0 none).
type Filter = reqmonRqFilterVal

// Request mappers: program MapperProgram(i) acts as rq_mappers[i] says.
const MaxMappers = 8

// MapperProgram names the program of mapper slot i.
func MapperProgram(i int) string { return fmt.Sprintf("reqmon_map%d", i) }

// MapperAction is rq_mappers' value.
type MapperAction = reqmonRqMapper

// Mapper actions and request id sources (enum rq_map_action, rq_map_id).
const (
	MapBegin = uint32(reqmonRqMapActionRQ_MAP_BEGIN)
	MapEnd   = uint32(reqmonRqMapActionRQ_MAP_END)
	IDArg0   = uint32(reqmonRqMapIdRQ_ID_ARG0)
	IDRet    = uint32(reqmonRqMapIdRQ_ID_RET)
	IDTID    = uint32(reqmonRqMapIdRQ_ID_TID)
)

// StatPassed indexes rq_stats: completed requests inside a benign box.
const StatPassed = uint32(reqmonRqStatRQ_ST_PASSED)

// Phase of a request.
const (
	PhaseReading    = 0
	PhaseResponding = 1
)

// Reason a request completed.
type Reason uint32

const (
	ReasonNextRequest Reason = 1   // a read after the response (keep-alive)
	ReasonClosed      Reason = 2   // the connection closed
	ReasonExited      Reason = 3   // the process exited
	ReasonMapped      Reason = 4   // a request mapper's end function ran
	ReasonQuiet       Reason = 100 // the agent: the response went quiet
	ReasonEvicted     Reason = 101 // the agent: gone from the table unseen
)

func (r Reason) String() string {
	switch r {
	case ReasonNextRequest:
		return "next-request"
	case ReasonClosed:
		return "closed"
	case ReasonExited:
		return "exited"
	case ReasonMapped:
		return "mapped"
	case ReasonQuiet:
		return "quiet"
	case ReasonEvicted:
		return "evicted"
	}
	return fmt.Sprintf("reason-%d", uint32(r))
}

// Key identifies a request's connection: the socket and the process.
type Key struct {
	Sk   uint64
	TGID uint32
}

// Request is one request's resources as the kernel counted them.
type Request struct {
	Key
	ID      uint64
	Start   uint64 // ns, CLOCK_MONOTONIC
	LastIO  uint64
	FirstTX uint64
	CPU     uint64 // ns on CPU (excluding the part still running: see Thread)
	Faults  uint64
	Mem     uint64 // bytes of anonymous memory mapped and heap grown
	RX, TX  uint64 // bytes
	Backend uint64 // bytes on other sockets (backends)
	RXCalls uint32
	TXCalls uint32
	LastTID uint32
	Phase   uint8
	Local   netip.AddrPort
	Remote  netip.AddrPort
}

// Record is a completed request from the `requests` stream.
type Record struct {
	Request
	End    uint64
	Reason Reason
}

// Thread is a watched thread: its current request and since when it runs.
type Thread struct {
	TID   uint32
	TGID  uint32
	Req   Key    // Sk 0: none
	Since uint64 // on CPU since (ns); 0 when off CPU
}

// Sizes of the kernel structs, checked against the generated types.
var (
	sizeKey    = int(unsafe.Sizeof(reqmonRqKey{}))
	sizeRecord = int(unsafe.Sizeof(reqmonRqRecord{}))
	sizeThread = int(unsafe.Sizeof(reqmonRqThread{}))
)

func addrPort(a [16]uint8, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port)
}

func decodeReq(k reqmonRqKey, r *reqmonRqReq) Request {
	return Request{
		Key: Key{Sk: k.Sk, TGID: k.Tgid},
		ID:  r.Id, Start: r.StartNs, LastIO: r.LastIoNs, FirstTX: r.FirstTxNs,
		CPU: r.CpuNs, Faults: r.Faults, Mem: r.MemBytes, RX: r.RxBytes, TX: r.TxBytes,
		Backend: r.BackendBytes, RXCalls: r.RxCalls, TXCalls: r.TxCalls, LastTID: r.LastTid,
		Phase:  r.Phase,
		Local:  addrPort(r.Laddr, r.Lport),
		Remote: addrPort(r.Raddr, r.Rport),
	}
}

func decodeThread(tid uint32, v *reqmonRqThread) Thread {
	return Thread{TID: tid, TGID: v.Tgid, Req: Key{Sk: v.Req.Sk, TGID: v.Req.Tgid}, Since: v.Since}
}

// decode copies a raw record into its bpf2go type. The object is built for
// bpfel and loads only on little-endian hosts, whose layout the generated
// types (integers, arrays and explicit padding) share byte for byte: a
// copy, where binary.Read's reflection cost more than the rest of handling
// a request.
func decode[T reqmonRqRecord | reqmonRqThread](b []byte, v *T, size int, what string) error {
	if len(b) < size {
		return fmt.Errorf("reqmon: %s of %d bytes, want %d", what, len(b), size)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(v)), size), b)
	return nil
}

// DecodeRecord decodes a raw record from the `requests` ring buffer.
func DecodeRecord(b []byte) (Record, error) {
	var r reqmonRqRecord
	if err := decode(b, &r, sizeRecord, "record"); err != nil {
		return Record{}, err
	}
	return Record{Request: decodeReq(r.Key, &r.Req), End: r.EndNs, Reason: Reason(r.Reason)}, nil
}

// ReqKeyBytes encodes a request key as the `reqs` table stores it.
func ReqKeyBytes(k Key) []byte {
	b := make([]byte, sizeKey)
	binary.LittleEndian.PutUint64(b, k.Sk)
	binary.LittleEndian.PutUint32(b[8:], k.TGID)
	return b
}

// Tables reads the `reqs` and `threads` tables with batch lookups into
// buffers it keeps from one read to the next: the agent sweeps them every
// few tens of milliseconds, and fresh buffers sized for the tables (what a
// generic read allocates) cost the watched server more than the sweep
// itself, in memory bandwidth and cache. Not safe for concurrent use.
type Tables struct {
	rk []reqmonRqKey
	rv []reqmonRqReq
	tk []uint32
	tv []reqmonRqThread
}

// tableChunk is the entries read per batch call.
const tableChunk = 256

// Reqs calls fn for every entry of a `reqs` table.
func (t *Tables) Reqs(m *ebpf.Map, fn func(Request)) error {
	if t.rk == nil {
		t.rk, t.rv = make([]reqmonRqKey, tableChunk), make([]reqmonRqReq, tableChunk)
	}
	return batchAll(m, t.rk, t.rv, func(i int) { fn(decodeReq(t.rk[i], &t.rv[i])) })
}

// Threads calls fn for every entry of a `threads` table.
func (t *Tables) Threads(m *ebpf.Map, fn func(Thread)) error {
	if t.tk == nil {
		t.tk, t.tv = make([]uint32, tableChunk), make([]reqmonRqThread, tableChunk)
	}
	return batchAll(m, t.tk, t.tv, func(i int) { fn(decodeThread(t.tk[i], &t.tv[i])) })
}

func batchAll[K, V any](m *ebpf.Map, keys []K, vals []V, each func(int)) error {
	var c ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&c, keys, vals, nil)
		for i := 0; i < n; i++ {
			each(i)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reqmon: read %s: %w", m, err)
		}
	}
}
